package org.dicomfhir.hapi.resthook;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.interceptor.executor.InterceptorService;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import org.junit.jupiter.api.Test;
import org.springframework.mock.env.MockEnvironment;

class RestHookGuardConfigTest {

	private static final FhirContext R4 = FhirContext.forR4Cached();

	@Test
	void registeredOnTheJpaInterceptorServiceWithHapisTimeouts() {
		InterceptorService jpa = new InterceptorService();
		FhirContext context = FhirContext.forR4();

		RestHookGuard guard = new RestHookGuardConfig()
				.restHookGuard(new MockEnvironment(), context, new DaoRegistry(), jpa);

		assertTrue(jpa.getAllRegisteredInterceptors().contains(guard));
		assertEquals(10_000, context.getRestfulClientFactory().getConnectTimeout());
		assertEquals(10_000, context.getRestfulClientFactory().getSocketTimeout());
	}

	@Test
	void settingsFromTheEnvironment() {
		InterceptorService jpa = new InterceptorService();
		FhirContext context = FhirContext.forR4();
		MockEnvironment environment = new MockEnvironment()
				.withProperty("rest-hook-guard.connect-timeout-seconds", "2")
				.withProperty("rest-hook-guard.read-timeout-seconds", "4.5");

		new RestHookGuardConfig().restHookGuard(environment, context, new DaoRegistry(), jpa);

		assertEquals(2_000, context.getRestfulClientFactory().getConnectTimeout());
		assertEquals(4_500, context.getRestfulClientFactory().getSocketTimeout());
	}

	@Test
	void offMeansHapisOwnBehaviour() {
		InterceptorService jpa = new InterceptorService();
		MockEnvironment environment = new MockEnvironment().withProperty("rest-hook-guard.enabled", "false");

		new RestHookGuardConfig().restHookGuard(environment, R4, new DaoRegistry(), jpa);

		assertFalse(jpa.hasHooks(Pointcut.SUBSCRIPTION_AFTER_DELIVERY_FAILED));
	}

	@Test
	void aBadValueStopsTheStartNamingTheSetting() {
		MockEnvironment environment = new MockEnvironment().withProperty("rest-hook-guard.error-after-seconds", "0");
		IllegalStateException refused = assertThrows(
				IllegalStateException.class,
				() -> new RestHookGuardConfig()
						.restHookGuard(environment, R4, new DaoRegistry(), new InterceptorService()));
		assertTrue(refused.getMessage().startsWith("rest-hook-guard.error-after-seconds"), refused.getMessage());
	}
}
