package org.dicomfhir.hapi.resthook;

import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.subscription.model.CanonicalSubscription;
import ca.uhn.fhir.jpa.subscription.model.CanonicalSubscriptionChannelType;
import ca.uhn.fhir.jpa.subscription.model.ResourceDeliveryMessage;
import ca.uhn.fhir.rest.client.exceptions.FhirClientConnectionException;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import java.net.URI;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps a REST-hook Subscription whose endpoint is down from holding up HAPI's deliveries to every
 * other Subscription.
 *
 * <p>How HAPI FHIR 8.8 delivers (hapi-fhir-jpaserver-subscription, hapi-fhir-storage): each
 * Subscription has its own in-memory delivery channel ({@code LinkedBlockingChannelFactory}: 2
 * threads, a queue of 1000, and a rejection policy that blocks the sender when the queue is full). A
 * failed delivery is retried by {@code RetryingMessageHandlerWrapper} for one minute
 * ({@code RetryPolicyProvider}: TimeoutRetryPolicy 60 s, back-off 1 s x 1.1) and then dropped, so a
 * dead endpoint drains about two deliveries a minute. Once its queue is full, the 5 matching threads
 * block on it, matching stops for every Subscription, and so does the 5 s scheduler that feeds the
 * matching channel: nobody receives anything until the dead endpoint's queue has drained, hours later.
 *
 * <p>This interceptor lets HAPI retry as usual for {@code errorAfter}, so a receiver that restarts
 * loses nothing. When one Subscription's deliveries have failed that long without a single success,
 * it sets that Subscription's status to {@code error} with {@code Subscription.error} saying why
 * (FHIR R4 Subscription, https://hl7.org/fhir/R4/subscription.html#errors), which makes HAPI
 * unregister it, and it drops that Subscription's queued deliveries without sending them. It
 * delivers again as soon as HAPI registers the Subscription as active again (a client PUTs it with
 * status {@code requested}). The pointcuts and what their return values do:
 * https://hapifhir.io/hapi-fhir/docs/interceptors/server_pointcuts.html (Subscription pointcuts).
 */
@Interceptor
public class RestHookGuard {

	private static final Logger log = LoggerFactory.getLogger(RestHookGuard.class);

	/** Sets a Subscription's status to {@code error}; {@link Marked} says what it found. */
	@FunctionalInterface
	public interface StatusWriter {
		Marked markError(String subscriptionId, String endpoint, String reason);
	}

	public enum Marked {
		/** The Subscription was active with this endpoint and is now {@code error}. */
		ERROR,
		/** It is already not active (error, off, deleted): HAPI delivers no new changes to it. */
		NOT_ACTIVE,
		/** It was changed meanwhile (another endpoint, a newer version): the failures were not its. */
		CHANGED
	}

	private final Duration errorAfter;
	private final StatusWriter writer;
	private final LongSupplier millis;
	private final Map<String, Streak> streaks = new ConcurrentHashMap<>();

	public RestHookGuard(Duration errorAfter, StatusWriter writer) {
		this(errorAfter, writer, () -> System.nanoTime() / 1_000_000);
	}

	RestHookGuard(Duration errorAfter, StatusWriter writer, LongSupplier millis) {
		this.errorAfter = errorAfter;
		this.writer = writer;
		this.millis = millis;
	}

	/** A Subscription set to error has its queued deliveries dropped here: no request, no retry. */
	@Hook(Pointcut.SUBSCRIPTION_BEFORE_REST_HOOK_DELIVERY)
	public boolean beforeDelivery(CanonicalSubscription subscription) {
		Streak streak = streaks.get(subscription.getIdPart());
		return streak == null || !streak.open;
	}

	@Hook(Pointcut.SUBSCRIPTION_AFTER_REST_HOOK_DELIVERY)
	public void delivered(CanonicalSubscription subscription) {
		if (streaks.remove(subscription.getIdPart()) != null) {
			log.info("REST-hook deliveries to Subscription/{} succeed again", subscription.getIdPart());
		}
	}

	/** HAPI registers a Subscription when it becomes active (again): deliver to it from now on. */
	@Hook(Pointcut.SUBSCRIPTION_AFTER_ACTIVE_SUBSCRIPTION_REGISTERED)
	public void registered(CanonicalSubscription subscription) {
		Streak streak = streaks.remove(subscription.getIdPart());
		if (streak != null && streak.open) {
			log.info("Subscription/{} is active again: delivering to it", subscription.getIdPart());
		}
	}

	/**
	 * Returning true lets HAPI rethrow, and its channel retries the delivery; false ends it here (the
	 * pointcut's contract: {@code BaseSubscriptionDeliveryListener} then returns normally).
	 */
	@Hook(Pointcut.SUBSCRIPTION_AFTER_DELIVERY_FAILED)
	public boolean deliveryFailed(ResourceDeliveryMessage message, Exception failure) {
		CanonicalSubscription subscription = message.getSubscription();
		if (subscription == null || subscription.getChannelType() != CanonicalSubscriptionChannelType.RESTHOOK) {
			return true;
		}
		String id = subscription.getIdPart();
		long now = millis.getAsLong();
		Streak streak = streaks.computeIfAbsent(id, k -> new Streak(now));
		String reason;
		synchronized (streak) {
			if (streak.open) {
				return false;
			}
			streak.failures++;
			if (now - streak.since < errorAfter.toMillis()) {
				return true;
			}
			reason = String.format(
					"REST-hook deliveries to %s failed for %d s without a success (%d attempts, last: %s); "
							+ "set to error by %s, PUT it with status requested to resume",
					origin(subscription.getEndpointUrl()),
					(now - streak.since) / 1000,
					streak.failures,
					describe(failure),
					getClass().getSimpleName());
			try {
				Marked marked = writer.markError(id, subscription.getEndpointUrl(), reason);
				if (marked == Marked.CHANGED) {
					streaks.remove(id, streak);
					return true;
				}
				streak.open = true;
				if (marked == Marked.ERROR) {
					log.warn("Subscription/{} set to error: {}", id, reason);
				} else {
					log.info("Subscription/{} is no longer active: dropping its queued deliveries", id);
				}
			} catch (RuntimeException e) {
				// not written: keep the streak so the next failure tries again; this delivery ends here
				log.warn("Subscription/{} could not be set to error: {}", id, describe(e));
			}
		}
		return false;
	}

	/** scheme://host:port of an endpoint: never its path, which may carry ids or credentials. */
	static String origin(String endpoint) {
		try {
			URI uri = URI.create(endpoint);
			return uri.getScheme() + "://" + uri.getHost() + (uri.getPort() < 0 ? "" : ":" + uri.getPort());
		} catch (RuntimeException e) {
			return "an unparseable endpoint";
		}
	}

	/**
	 * The failure without the request URL (it names the resource): the HTTP status the endpoint
	 * answered, or the innermost cause (connection refused, read timed out). HAPI's client throws
	 * a BaseServerResponseException of the answer's status; FhirClientConnectionException is one
	 * too (500) but means there was no answer.
	 */
	static String describe(Throwable failure) {
		Throwable cause = failure;
		for (Throwable t = failure; t != null; t = t.getCause()) {
			if (t instanceof BaseServerResponseException answered
					&& !(t instanceof FhirClientConnectionException)
					&& answered.getStatusCode() > 0) {
				return "HTTP " + answered.getStatusCode();
			}
			cause = t;
		}
		String text = cause.getMessage();
		return cause.getClass().getSimpleName()
				+ (text == null || text.contains("/") ? "" : ": " + text.substring(0, Math.min(text.length(), 120)));
	}

	/** Failures since the last success; {@code open}: set to error, its deliveries are dropped. */
	private static final class Streak {
		final long since;
		int failures;
		boolean open;

		Streak(long since) {
			this.since = since;
		}
	}
}
