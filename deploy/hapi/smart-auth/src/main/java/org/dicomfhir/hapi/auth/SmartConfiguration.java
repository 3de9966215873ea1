package org.dicomfhir.hapi.auth;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code [base]/.well-known/smart-configuration}: SMART App Launch 2.x, "Conformance" (conformance.html,
 * "Metadata"): the authorization server's endpoints and what this server supports.
 *
 * <p>{@code smart-imaging-access} and its App Launch mode
 * ({@code http://fhir.org/argonaut/smart-imaging/capabilities/app-launch}) follow SMART Imaging Access,
 * "Discovery": this FHIR endpoint serves ImagingStudy itself, so the capabilities go in the top-level
 * array. The Backend Services mode is not advertised: there {@code system/ImagingStudy.rs} must be
 * limited to each client's pre-authorized patients, and here system scopes are the sidecar's own
 * unrestricted credentials.
 */
public final class SmartConfiguration {

	public static final String IMAGING_ACCESS = "smart-imaging-access";
	public static final String IMAGING_APP_LAUNCH = "http://fhir.org/argonaut/smart-imaging/capabilities/app-launch";

	/** The scopes the demo realm offers (deploy/keycloak/realm-dicom-fhir.json). */
	static final List<String> SCOPES = List.of(
			"openid", "fhirUser", "launch/patient", "patient/*.rs", "user/*.rs", "system/*.rs", "system/*.cruds");

	static final List<String> CAPABILITIES = List.of(
			"launch-standalone",
			"client-public",
			"client-confidential-symmetric",
			"client-confidential-asymmetric",
			"context-standalone-patient",
			"permission-patient",
			"permission-user",
			"permission-v2",
			"sso-openid-connect",
			IMAGING_ACCESS,
			IMAGING_APP_LAUNCH);

	private static final ObjectMapper JSON = new ObjectMapper();

	private SmartConfiguration() {}

	public static Map<String, Object> document(SmartAuthSettings settings) {
		Map<String, Object> doc = new LinkedHashMap<>();
		doc.put("issuer", settings.issuer());
		doc.put("jwks_uri", settings.jwksUrl().toString());
		doc.put("authorization_endpoint", settings.authorizationEndpoint());
		doc.put("token_endpoint", settings.tokenEndpoint());
		doc.put("grant_types_supported", List.of("authorization_code", "client_credentials"));
		doc.put("token_endpoint_auth_methods_supported", List.of("client_secret_basic", "client_secret_post", "private_key_jwt"));
		// SMART Backend Services / client-confidential-asymmetric: RS384 or ES384 client assertions
		doc.put("token_endpoint_auth_signing_alg_values_supported", List.of("RS384", "ES384"));
		doc.put("scopes_supported", SCOPES);
		doc.put("response_types_supported", List.of("code"));
		doc.put("code_challenge_methods_supported", List.of("S256"));
		doc.put("capabilities", CAPABILITIES);
		return doc;
	}

	public static byte[] json(SmartAuthSettings settings) {
		try {
			return JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(document(settings));
		} catch (JsonProcessingException e) {
			throw new IllegalStateException(e); // a map of strings always serialises
		}
	}
}
