package org.dicomfhir.hapi.auth;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.EnumSet;
import java.util.List;
import org.dicomfhir.hapi.auth.SmartScope.Context;
import org.dicomfhir.hapi.auth.SmartScope.Permission;
import org.junit.jupiter.api.Test;

class SmartScopeTest {

	@Test
	void v2ScopesAreContextTypeAndPermissionsInCrudsOrder() {
		SmartScope scope = SmartScope.parse("patient/*.rs").orElseThrow();
		assertEquals(Context.PATIENT, scope.context());
		assertEquals("*", scope.resourceType());
		assertEquals(EnumSet.of(Permission.READ, Permission.SEARCH), scope.permissions());

		assertEquals(EnumSet.allOf(Permission.class), SmartScope.parse("system/*.cruds").orElseThrow().permissions());
		assertEquals("ImagingStudy", SmartScope.parse("user/ImagingStudy.r").orElseThrow().resourceType());
	}

	@Test
	void v1ScopesMeanTheirV2Equivalents() {
		assertEquals(EnumSet.of(Permission.READ, Permission.SEARCH), SmartScope.parse("patient/*.read").orElseThrow().permissions());
		assertEquals(
				EnumSet.of(Permission.CREATE, Permission.UPDATE, Permission.DELETE),
				SmartScope.parse("system/*.write").orElseThrow().permissions());
		assertEquals(EnumSet.allOf(Permission.class), SmartScope.parse("system/*.*").orElseThrow().permissions());
	}

	@Test
	void anythingElseIsNoResourceScope() {
		for (String text : List.of(
				"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.sr", "patient/*.rr",
				"patient/*.x", "patient/*", "admin/*.rs", "patient/imagingStudy.rs", "patient/*.rs?category=x",
				"patient/*.", " patient/*.rs")) {
			assertTrue(SmartScope.parse(text).isEmpty(), text);
		}
	}

	@Test
	void theScopeClaimIsSpaceSeparatedAndKeepsOnlyResourceScopes() {
		List<SmartScope> scopes = SmartToken.scopesOf("openid  fhirUser launch/patient patient/*.rs\tuser/Patient.r");
		assertEquals(2, scopes.size());
		assertEquals(Context.USER, scopes.get(1).context());
		assertTrue(SmartToken.scopesOf(null).isEmpty());
	}

	@Test
	void aPatientClaimThatIsNoFhirIdGivesNoContext() {
		assertEquals(null, new SmartToken("s", "c", List.of(), "a/b", null).patient());
		assertEquals("abc-1.2", new SmartToken("s", "c", List.of(), "abc-1.2", null).patient());
	}
}
