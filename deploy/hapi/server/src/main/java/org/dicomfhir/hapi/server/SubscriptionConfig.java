package org.dicomfhir.hapi.server;

import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import org.dicomfhir.hapi.resthook.RestHookGuardConfig;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;

/**
 * Criteria-based REST-hook Subscriptions, matched and delivered inside this JVM.
 *
 * <p>The submitter puts each resource change on a channel, the processor matches it against active
 * Subscriptions and delivers it. SubscriptionChannelConfig makes those channels in-memory queues
 * (no broker). The sidecar registers e.g. {@code Patient?} with payload application/fhir+json and
 * receives {@code PUT {endpoint}/Patient/{id}}; with the subscription-send-delete-messages
 * extension also {@code DELETE {endpoint}/Patient/{id}}.
 *
 * <p>{@link RestHookGuardConfig}: each Subscription's deliveries queue up to 1000 behind its own two
 * threads, and a full queue blocks matching for every Subscription; the guard sets a Subscription
 * whose endpoint keeps failing to status error before that happens (rest-hook-guard.*).
 */
@Configuration
@Import({
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	RestHookGuardConfig.class
})
public class SubscriptionConfig {

	@Bean
	public SubscriptionSettings subscriptionSettings(HapiProperties properties) {
		SubscriptionSettings settings = new SubscriptionSettings();
		if (properties.getSubscription().isResthookEnabled()) {
			// without a supported type HAPI never activates a Subscription (it stays "requested")
			settings.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		}
		// activate a new/changed Subscription at once instead of on the next 5 s poll; changes to
		// other resources are still persisted and delivered by HAPI's 5 s scheduler (HAPI 8 design)
		settings.setSubscriptionChangeQueuedImmediately(true);
		return settings;
	}

	/** Delivery wires an e-mail sender for every channel type; we send no e-mail. */
	@Bean
	public IEmailSender emailSender() {
		return email -> {
			throw new UnsupportedOperationException("e-mail subscriptions are not supported by this server");
		};
	}
}
