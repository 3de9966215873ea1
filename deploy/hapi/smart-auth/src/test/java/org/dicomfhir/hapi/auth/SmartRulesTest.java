package org.dicomfhir.hapi.auth;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.api.RequestTypeEnum;
import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.auth.PolicyEnum;
import ca.uhn.fhir.rest.server.servlet.ServletRequestDetails;
import java.util.List;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Endpoint;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.ImagingStudy;
import org.hl7.fhir.r4.model.Patient;
import org.hl7.fhir.r4.model.Reference;
import org.junit.jupiter.api.Test;

/** The scope-to-rule mapping as HAPI's own AuthorizationInterceptor decides with it. */
class SmartRulesTest {

	private static final RestfulServer SERVER = new RestfulServer(FhirContext.forR4Cached());

	private static SmartToken token(String patient, String scopes) {
		return new SmartToken("sub", "client", SmartToken.scopesOf(scopes), patient, null);
	}

	private static PolicyEnum decide(SmartToken token, RestOperationTypeEnum op, String resourceType, String id,
			String operation, IBaseResource output) {
		SmartAuth auth = new SmartAuth(TestKeys.settings(), null);
		SmartAuthorizationInterceptor interceptor = new SmartAuthorizationInterceptor(auth);
		ServletRequestDetails request = new ServletRequestDetails();
		request.setServer(SERVER);
		request.setRequestType(op == RestOperationTypeEnum.READ ? RequestTypeEnum.GET : RequestTypeEnum.POST);
		request.setRestOperationType(op);
		request.setResourceName(resourceType);
		if (id != null) {
			request.setId(new IdType(resourceType, id));
		}
		request.setOperation(operation);
		request.getUserData().put(SmartAuth.TOKEN_KEY, token);
		Pointcut pointcut = output == null ? Pointcut.SERVER_INCOMING_REQUEST_PRE_HANDLED : Pointcut.STORAGE_PRESHOW_RESOURCES;
		IdType inputId = id == null ? null : new IdType(resourceType, id);
		return interceptor.applyRulesAndReturnDecision(op, request, null, inputId, output, pointcut).getDecision();
	}

	private static PolicyEnum read(SmartToken token, IBaseResource resource) {
		String type = resource.fhirType();
		return decide(token, RestOperationTypeEnum.READ, type, resource.getIdElement().getIdPart(), null, resource);
	}

	private static PolicyEnum fetchImaging(SmartToken token, String patientId) {
		RestOperationTypeEnum op = patientId == null
				? RestOperationTypeEnum.EXTENDED_OPERATION_TYPE
				: RestOperationTypeEnum.EXTENDED_OPERATION_INSTANCE;
		return decide(token, op, "Patient", patientId, "$fetch-imaging", null);
	}

	private static Patient patient(String id) {
		Patient patient = new Patient();
		patient.setId(new IdType("Patient", id));
		return patient;
	}

	private static ImagingStudy studyOf(String patientId) {
		ImagingStudy study = new ImagingStudy();
		study.setId(new IdType("ImagingStudy", "s-" + patientId));
		study.setSubject(new Reference("Patient/" + patientId));
		return study;
	}

	private static Endpoint endpoint() {
		Endpoint endpoint = new Endpoint();
		endpoint.setId(new IdType("Endpoint", "e1"));
		return endpoint;
	}

	@Test
	void aPatientTokenReadsItsCompartmentAndEveryEndpoint() {
		SmartToken a = token("A", "openid launch/patient patient/*.rs");
		assertEquals(PolicyEnum.ALLOW, read(a, patient("A")));
		assertEquals(PolicyEnum.ALLOW, read(a, studyOf("A")));
		assertEquals(PolicyEnum.ALLOW, read(a, endpoint()));
		assertEquals(PolicyEnum.DENY, read(a, patient("B")));
		assertEquals(PolicyEnum.DENY, read(a, studyOf("B")));
	}

	@Test
	void v1AndGranularPatientScopes() {
		assertEquals(PolicyEnum.ALLOW, read(token("A", "patient/*.read"), studyOf("A")));
		SmartToken imagingOnly = token("A", "patient/ImagingStudy.rs");
		assertEquals(PolicyEnum.ALLOW, read(imagingOnly, studyOf("A")));
		assertEquals(PolicyEnum.DENY, read(imagingOnly, patient("A")));
		assertEquals(PolicyEnum.ALLOW, fetchImaging(imagingOnly, "A"));
		assertEquals(PolicyEnum.DENY, fetchImaging(token("A", "patient/Patient.rs"), "A"), "no ImagingStudy scope");
	}

	@Test
	void aPatientScopeWithoutPatientContextGrantsNothing() {
		SmartToken noContext = token(null, "patient/*.rs");
		assertEquals(PolicyEnum.DENY, read(noContext, patient("A")));
		assertEquals(PolicyEnum.DENY, fetchImaging(noContext, "A"));
		assertEquals(PolicyEnum.DENY, fetchImaging(noContext, null));
	}

	@Test
	void fetchImagingOnThePatientInContextAndAtTypeLevel() {
		SmartToken a = token("A", "patient/*.rs");
		assertEquals(PolicyEnum.ALLOW, fetchImaging(a, "A"));
		assertEquals(PolicyEnum.DENY, fetchImaging(a, "B"));
		assertEquals(PolicyEnum.ALLOW, fetchImaging(a, null), "type level: the sidecar checks the resolved Patient");
	}

	@Test
	void userAndSystemReadsReadEverythingAndFetchForAnyone() {
		for (String scopes : List.of("openid fhirUser user/*.rs", "system/*.rs")) {
			SmartToken t = token(null, scopes);
			assertEquals(PolicyEnum.ALLOW, read(t, patient("B")), scopes);
			assertEquals(PolicyEnum.ALLOW, read(t, studyOf("B")), scopes);
			assertEquals(PolicyEnum.ALLOW, fetchImaging(t, "B"), scopes);
			assertEquals(PolicyEnum.ALLOW, fetchImaging(t, null), scopes);
			assertEquals(PolicyEnum.DENY, decide(t, RestOperationTypeEnum.UPDATE, "Patient", "B", null, null), scopes);
			assertEquals(PolicyEnum.DENY, decide(t, RestOperationTypeEnum.TRANSACTION, null, null, null, null), scopes);
		}
	}

	@Test
	void systemCrudsMayDoAnythingItsWritesIncluded() {
		for (String scopes : List.of("system/*.cruds", "system/*.*")) {
			SmartToken sidecar = token(null, scopes);
			assertEquals(PolicyEnum.ALLOW, decide(sidecar, RestOperationTypeEnum.UPDATE, "ImagingStudy", "x", null, null));
			assertEquals(PolicyEnum.ALLOW, decide(sidecar, RestOperationTypeEnum.TRANSACTION, null, null, null, null));
			assertEquals(PolicyEnum.ALLOW, decide(sidecar, RestOperationTypeEnum.DELETE, "Subscription", "x", null, null));
		}
	}

	@Test
	void noScopesNoAccessButTheCapabilityStatement() {
		SmartToken nothing = token("A", "openid fhirUser");
		assertEquals(PolicyEnum.DENY, read(nothing, patient("A")));
		assertEquals(PolicyEnum.ALLOW, decide(nothing, RestOperationTypeEnum.METADATA, null, null, null, null));
	}
}
