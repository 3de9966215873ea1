package org.dicomfhir.hapi.server;

import java.util.ArrayList;
import java.util.List;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * The few {@code hapi.fhir.*} settings we honour, named as in the hapiproject/hapi image so a
 * compose file and our local stack use the same keys (env: HAPI_FHIR_CUSTOM_PROVIDER_CLASSES, ...).
 */
@ConfigurationProperties(prefix = "hapi.fhir")
public class HapiProperties {

	/** Fully qualified class names, each with a no-arg constructor, registered as plain providers. */
	private List<String> customProviderClasses = new ArrayList<>();

	/** Fully qualified class names, each with a no-arg constructor, registered as server interceptors. */
	private List<String> customInterceptorClasses = new ArrayList<>();

	/** Fixed base URL for links in responses; empty = taken from each incoming request. */
	private String serverAddress = "";

	private final Subscription subscription = new Subscription();

	public static class Subscription {
		/** REST-hook subscriptions: without this HAPI leaves Subscriptions in status "requested". */
		private boolean resthookEnabled = true;

		public boolean isResthookEnabled() {
			return resthookEnabled;
		}

		public void setResthookEnabled(boolean resthookEnabled) {
			this.resthookEnabled = resthookEnabled;
		}
	}

	public List<String> getCustomProviderClasses() {
		return customProviderClasses;
	}

	public void setCustomProviderClasses(List<String> customProviderClasses) {
		this.customProviderClasses = customProviderClasses;
	}

	public List<String> getCustomInterceptorClasses() {
		return customInterceptorClasses;
	}

	public void setCustomInterceptorClasses(List<String> customInterceptorClasses) {
		this.customInterceptorClasses = customInterceptorClasses;
	}

	public String getServerAddress() {
		return serverAddress;
	}

	public void setServerAddress(String serverAddress) {
		this.serverAddress = serverAddress;
	}

	public Subscription getSubscription() {
		return subscription;
	}
}
