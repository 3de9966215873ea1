package org.dicomfhir.hapi.resthook;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ca.uhn.fhir.interceptor.api.HookParams;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.interceptor.executor.InterceptorService;
import ca.uhn.fhir.jpa.subscription.model.CanonicalSubscription;
import ca.uhn.fhir.jpa.subscription.model.CanonicalSubscriptionChannelType;
import ca.uhn.fhir.jpa.subscription.model.ResourceDeliveryMessage;
import ca.uhn.fhir.rest.client.exceptions.FhirClientConnectionException;
import ca.uhn.fhir.rest.server.exceptions.UnclassifiedServerFailureException;
import java.net.ConnectException;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.hl7.fhir.r4.model.IdType;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.springframework.messaging.MessagingException;

/**
 * The guard as HAPI calls it: registered in HAPI's InterceptorService and reached through the
 * pointcuts' HookParams, so a hook whose parameters do not fit its pointcut fails here.
 */
class RestHookGuardTest {

	private static final String SIDECAR = "http://sidecar.example:8090/notify";

	private final AtomicLong now = new AtomicLong(1_000_000);
	private final List<String> written = new ArrayList<>();
	private final AtomicReference<RestHookGuard.Marked> answer = new AtomicReference<>(RestHookGuard.Marked.ERROR);
	private final InterceptorService hapi = new InterceptorService();

	@BeforeEach
	void register() {
		RestHookGuard.StatusWriter writer = (id, endpoint, reason) -> {
			written.add(id + " " + endpoint + " " + reason);
			return answer.get();
		};
		hapi.registerInterceptor(new RestHookGuard(Duration.ofSeconds(30), writer, now::get));
	}

	@Test
	void failuresShorterThanErrorAfterAreRetriedByHapi() {
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		assertTrue(failed(sidecar, refused()), "true: HAPI rethrows and its channel retries");
		now.addAndGet(29_000);
		assertTrue(failed(sidecar, refused()));
		assertTrue(sendsTo(sidecar));
		assertEquals(List.of(), written);
	}

	@Test
	void failingForErrorAfterSetsErrorOnceAndDropsItsQueue() {
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		CanonicalSubscription other = restHook("other", "http://other.example/hook");
		failed(sidecar, refused());
		now.addAndGet(30_000);

		assertFalse(failed(sidecar, refused()), "false: no rethrow, no retry");
		assertEquals(1, written.size());
		assertTrue(written.get(0).startsWith("sidecar " + SIDECAR + " REST-hook deliveries to "
				+ "http://sidecar.example:8090 failed for 30 s without a success (2 attempts, last: "
				+ "ConnectException: Connection refused)"), written.get(0));

		assertFalse(sendsTo(sidecar), "queued deliveries are dropped without a request");
		assertFalse(failed(sidecar, refused()), "a delivery still in flight is not retried");
		assertEquals(1, written.size(), "written once");
		assertTrue(sendsTo(other), "other Subscriptions are not concerned");
	}

	@Test
	void aSuccessStartsTheCountAgain() {
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		failed(sidecar, refused());
		now.addAndGet(20_000);
		delivered(sidecar);
		now.addAndGet(1_000);
		assertTrue(failed(sidecar, refused()));
		now.addAndGet(29_000);
		assertTrue(failed(sidecar, refused()), "29 s since the first failure after the success");
		now.addAndGet(1_000);
		assertFalse(failed(sidecar, refused()));
		assertEquals(1, written.size());
	}

	@Test
	void activeAgainDeliversAgain() {
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		failed(sidecar, refused());
		now.addAndGet(31_000);
		failed(sidecar, refused());
		assertFalse(sendsTo(sidecar));

		hapi.callHooks(Pointcut.SUBSCRIPTION_AFTER_ACTIVE_SUBSCRIPTION_REGISTERED,
				new HookParams().add(CanonicalSubscription.class, sidecar));

		assertTrue(sendsTo(sidecar));
		assertTrue(failed(sidecar, refused()), "a new failure starts a new streak");
	}

	@Test
	void alreadyInactiveIsNotWrittenButStillDropped() {
		answer.set(RestHookGuard.Marked.NOT_ACTIVE);
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		failed(sidecar, refused());
		now.addAndGet(30_000);
		assertFalse(failed(sidecar, refused()));
		assertFalse(sendsTo(sidecar));
	}

	@Test
	void changedMeanwhileIsLeftAlone() {
		answer.set(RestHookGuard.Marked.CHANGED);
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		failed(sidecar, refused());
		now.addAndGet(30_000);
		assertTrue(failed(sidecar, refused()), "re-registered meanwhile: HAPI's retries as before");
		assertTrue(sendsTo(sidecar));
		now.addAndGet(10_000);
		assertTrue(failed(sidecar, refused()), "and the count starts again");
	}

	@Test
	void aFailedWriteIsTriedAgainAtTheNextFailure() {
		CanonicalSubscription sidecar = restHook("sidecar", SIDECAR);
		RestHookGuard.StatusWriter broken = (id, endpoint, reason) -> {
			throw new IllegalStateException("database down");
		};
		InterceptorService hapi = new InterceptorService();
		hapi.registerInterceptor(new RestHookGuard(Duration.ofSeconds(30), broken, now::get));
		HookParams params = failure(sidecar, refused());
		hapi.callHooks(Pointcut.SUBSCRIPTION_AFTER_DELIVERY_FAILED, params);
		now.addAndGet(30_000);

		assertFalse(hapi.callHooks(Pointcut.SUBSCRIPTION_AFTER_DELIVERY_FAILED, params), "this delivery ends");
		assertTrue(hapi.callHooks(Pointcut.SUBSCRIPTION_BEFORE_REST_HOOK_DELIVERY, delivery(sidecar)),
				"not set to error, so not dropped: HAPI still delivers to it and would never say it is active again");
	}

	@Test
	void otherChannelTypesAreNotConcerned() {
		CanonicalSubscription mail = restHook("mail", "mailto:someone@example.org");
		mail.setChannelType(CanonicalSubscriptionChannelType.EMAIL);
		failed(mail, refused());
		now.addAndGet(60_000);
		assertTrue(failed(mail, refused()));
		assertEquals(List.of(), written);
	}

	@Test
	void theReasonNamesTheAnswerOrTheCauseButNeverTheRequest() {
		Exception answered = new MessagingException("HAPI-0002: Failure handling subscription payload",
				new UnclassifiedServerFailureException(503, "PUT http://sidecar/notify/Patient/p1"));
		assertEquals("HTTP 503", RestHookGuard.describe(answered));
		Exception timedOut = new FhirClientConnectionException(
				"Failed to parse response from server when performing PUT to URL http://sidecar/notify/Patient/p1",
				new SocketTimeoutException("Read timed out"));
		assertEquals("SocketTimeoutException: Read timed out", RestHookGuard.describe(timedOut));
		assertEquals("http://h:1", RestHookGuard.origin("http://user:pw@h:1/notify?token=x"));
	}

	private boolean failed(CanonicalSubscription subscription, Exception failure) {
		return hapi.callHooks(Pointcut.SUBSCRIPTION_AFTER_DELIVERY_FAILED, failure(subscription, failure));
	}

	private boolean sendsTo(CanonicalSubscription subscription) {
		return hapi.callHooks(Pointcut.SUBSCRIPTION_BEFORE_REST_HOOK_DELIVERY, delivery(subscription));
	}

	private void delivered(CanonicalSubscription subscription) {
		hapi.callHooks(Pointcut.SUBSCRIPTION_AFTER_REST_HOOK_DELIVERY, delivery(subscription));
	}

	private static HookParams failure(CanonicalSubscription subscription, Exception failure) {
		return new HookParams().add(ResourceDeliveryMessage.class, message(subscription)).add(Exception.class, failure);
	}

	private static HookParams delivery(CanonicalSubscription subscription) {
		return new HookParams()
				.add(CanonicalSubscription.class, subscription)
				.add(ResourceDeliveryMessage.class, message(subscription));
	}

	private static ResourceDeliveryMessage message(CanonicalSubscription subscription) {
		ResourceDeliveryMessage message = new ResourceDeliveryMessage();
		message.setSubscription(subscription);
		message.setPayloadId(new IdType("Patient", "p1"));
		return message;
	}

	private static CanonicalSubscription restHook(String id, String endpoint) {
		CanonicalSubscription subscription = new CanonicalSubscription();
		subscription.setIdElement(new IdType("Subscription", id));
		subscription.setChannelType(CanonicalSubscriptionChannelType.RESTHOOK);
		subscription.setEndpointUrl(endpoint);
		return subscription;
	}

	private static Exception refused() {
		return new MessagingException("HAPI-0002: Failure handling subscription payload",
				new FhirClientConnectionException("PUT to URL " + SIDECAR + "/Patient/p1",
						new ConnectException("Connection refused")));
	}
}
