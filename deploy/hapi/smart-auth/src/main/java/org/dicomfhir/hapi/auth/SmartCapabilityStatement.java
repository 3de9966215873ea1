package org.dicomfhir.hapi.auth;

import org.hl7.fhir.instance.model.api.IBaseConformance;
import org.hl7.fhir.r4.model.CapabilityStatement;
import org.hl7.fhir.r4.model.CapabilityStatement.CapabilityStatementRestComponent;
import org.hl7.fhir.r4.model.CapabilityStatement.CapabilityStatementRestSecurityComponent;
import org.hl7.fhir.r4.model.CodeableConcept;
import org.hl7.fhir.r4.model.Coding;
import org.hl7.fhir.r4.model.Extension;
import org.hl7.fhir.r4.model.UriType;

/**
 * {@code CapabilityStatement.rest.security} for SMART on FHIR (FHIR R4 capabilitystatement
 * "rest.security"; SMART App Launch 2.x conformance.html: the {@code SMART-on-FHIR} service and the
 * {@code oauth-uris} extension that pre-2.0 clients read the endpoints from).
 */
final class SmartCapabilityStatement {

	static final String SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service";
	static final String OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

	private SmartCapabilityStatement() {}

	static void addSecurity(IBaseConformance conformance, SmartAuthSettings settings) {
		if (!(conformance instanceof CapabilityStatement statement)) {
			return; // R4 only, like the rest of this server
		}
		for (CapabilityStatementRestComponent rest : statement.getRest()) {
			CapabilityStatementRestSecurityComponent security = new CapabilityStatementRestSecurityComponent();
			security.setCors(!settings.corsOrigins().isEmpty());
			security.addService(new CodeableConcept(new Coding(SERVICE_SYSTEM, "SMART-on-FHIR", "SMART-on-FHIR"))
					.setText("OAuth2 bearer tokens per SMART App Launch; discovery at .well-known/smart-configuration"));
			Extension uris = new Extension(OAUTH_URIS);
			uris.addExtension(new Extension("authorize", new UriType(settings.authorizationEndpoint())));
			uris.addExtension(new Extension("token", new UriType(settings.tokenEndpoint())));
			security.addExtension(uris);
			security.setDescription("Every request except metadata and .well-known/smart-configuration needs a bearer "
					+ "access token of " + settings.issuer() + " for " + settings.audience());
			rest.setSecurity(security);
		}
	}
}
