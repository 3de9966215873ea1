package org.dicomfhir.hapi.resthook;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.rest.client.api.IRestfulClientFactory;
import java.time.Duration;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.env.Environment;

/**
 * Registers {@link RestHookGuard} with HAPI's JPA interceptor service, the one that broadcasts the
 * Subscription pointcuts. (An interceptor named in {@code hapi.fhir.custom-interceptor-classes} is
 * registered on the RestfulServer's own interceptor service instead and never sees a delivery, which
 * runs on a channel thread outside any request.) Our server imports this class; in the
 * hapiproject/hapi image {@code hapi.fhir.custom-bean-packages=org.dicomfhir.hapi.resthook} makes
 * the starter's component scan find it.
 *
 * <p>Settings (Spring properties, or the environment in upper case: REST_HOOK_GUARD_...):
 * {@code rest-hook-guard.enabled} (true), {@code rest-hook-guard.error-after-seconds} (30),
 * {@code rest-hook-guard.connect-timeout-seconds} and {@code rest-hook-guard.read-timeout-seconds}
 * (10 each, HAPI's own defaults: RestfulClientFactory DEFAULT_CONNECT_TIMEOUT and
 * DEFAULT_SOCKET_TIMEOUT), which bound each delivery request: HAPI sends REST-hooks with the
 * FhirContext's REST client.
 */
@Configuration
public class RestHookGuardConfig {

	private static final Logger log = LoggerFactory.getLogger(RestHookGuardConfig.class);

	@Bean
	public RestHookGuard restHookGuard(
			Environment environment,
			FhirContext fhirContext,
			DaoRegistry daoRegistry,
			IInterceptorService interceptorService) {
		Duration errorAfter = seconds(environment, "rest-hook-guard.error-after-seconds", 30);
		IRestfulClientFactory clients = fhirContext.getRestfulClientFactory();
		clients.setConnectTimeout(millis(environment, "rest-hook-guard.connect-timeout-seconds", 10));
		clients.setSocketTimeout(millis(environment, "rest-hook-guard.read-timeout-seconds", 10));
		RestHookGuard guard = new RestHookGuard(errorAfter, new SubscriptionErrorWriter(daoRegistry));
		if (environment.getProperty("rest-hook-guard.enabled", Boolean.class, true)) {
			interceptorService.registerInterceptor(guard);
			log.info(
					"REST-hook guard on: a Subscription whose deliveries fail for {} s is set to error",
					errorAfter.toSeconds());
		} else {
			log.warn("REST-hook guard off: a dead REST-hook endpoint can stall every Subscription's deliveries");
		}
		return guard;
	}

	private static Duration seconds(Environment environment, String name, double fallback) {
		double value = environment.getProperty(name, Double.class, fallback);
		if (!(value > 0) || Double.isInfinite(value)) {
			throw new IllegalStateException(name + " must be a positive number of seconds, not " + value);
		}
		return Duration.ofMillis(Math.round(value * 1000));
	}

	private static int millis(Environment environment, String name, double fallback) {
		return Math.toIntExact(seconds(environment, name, fallback).toMillis());
	}
}
