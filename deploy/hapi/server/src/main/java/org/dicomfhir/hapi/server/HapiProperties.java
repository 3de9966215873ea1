package org.dicomfhir.hapi.server;

import java.util.ArrayList;
import java.util.List;
import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.util.unit.DataSize;

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

	/** Largest {@code _count} a search page may have (HAPI's own default: 50). */
	private int maxPageSize = 500;

	private final Subscription subscription = new Subscription();

	private final Limits limits = new Limits();

	/**
	 * Request limits enforced by {@link RequestLimitsFilter} with a FHIR OperationOutcome and a status
	 * that names the limit (414, 431, 413). Tomcat's own limits sit above them (application.properties).
	 */
	public static class Limits {
		/** Request target (path + '?' + query), in characters: 414 above. */
		private int maxUriLength = 8192;
		/** Header fields in all, each counted as {@code name: value\r\n}: 431 above. */
		private long maxHeaderBytes = 16384;
		/** Number of header fields: 431 above. */
		private int maxHeaderCount = 100;
		/** Request body: 413 above a Content-Length this large; a chunked body fails to read past it. */
		private DataSize maxBodySize = DataSize.ofMegabytes(32);

		public int getMaxUriLength() {
			return maxUriLength;
		}

		public void setMaxUriLength(int maxUriLength) {
			this.maxUriLength = maxUriLength;
		}

		public long getMaxHeaderBytes() {
			return maxHeaderBytes;
		}

		public void setMaxHeaderBytes(long maxHeaderBytes) {
			this.maxHeaderBytes = maxHeaderBytes;
		}

		public int getMaxHeaderCount() {
			return maxHeaderCount;
		}

		public void setMaxHeaderCount(int maxHeaderCount) {
			this.maxHeaderCount = maxHeaderCount;
		}

		public DataSize getMaxBodySize() {
			return maxBodySize;
		}

		public void setMaxBodySize(DataSize maxBodySize) {
			this.maxBodySize = maxBodySize;
		}
	}

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

	public int getMaxPageSize() {
		return maxPageSize;
	}

	public void setMaxPageSize(int maxPageSize) {
		this.maxPageSize = maxPageSize;
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

	public Limits getLimits() {
		return limits;
	}
}
