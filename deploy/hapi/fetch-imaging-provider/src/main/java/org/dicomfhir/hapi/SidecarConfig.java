package org.dicomfhir.hapi;

import java.net.URI;
import java.time.Duration;
import java.util.function.Function;

/**
 * Where and how to reach the imaging sidecar. Each value is read from a Java system property,
 * else from an environment variable, else a default: the same jar must work in our local
 * server (system properties or env) and in the hapiproject/hapi image (env only).
 *
 * @param sidecarUrl           root of the sidecar, its FHIR base is {@code sidecarUrl + "/fhir"}
 * @param relaySecret          sent as {@code X-Sidecar-Secret} (the sidecar's {@code SIDECAR_RELAY_SECRET});
 *                             null or blank = not sent. Never stored in a FHIR resource.
 * @param timeout              connect + response timeout for one forwarded call
 * @param forwardAuthorization whether the caller's Authorization header goes to the sidecar
 * @param maxBodyBytes         largest request body relayed; a larger one is answered 413 by the provider
 * @param forwardCaller        whether the caller's bearer token goes to the sidecar as
 *                             {@code X-Caller-Authorization} (only together with the relay secret), so
 *                             the sidecar knows who asks: for its patient check and its audit
 */
public record SidecarConfig(
		URI sidecarUrl,
		String relaySecret,
		Duration timeout,
		boolean forwardAuthorization,
		long maxBodyBytes,
		boolean forwardCaller) {

	public static final String URL_PROPERTY = "fetch-imaging.sidecar-url";
	public static final String URL_ENV = "FETCH_IMAGING_SIDECAR_URL";
	public static final String SECRET_PROPERTY = "fetch-imaging.relay-secret";
	public static final String SECRET_ENV = "FETCH_IMAGING_RELAY_SECRET";
	/** The first wave's names, still read when the new ones are not set. */
	public static final String OLD_SECRET_PROPERTY = "fetch-imaging.shared-secret";
	public static final String OLD_SECRET_ENV = "FETCH_IMAGING_SHARED_SECRET";
	public static final String TIMEOUT_PROPERTY = "fetch-imaging.timeout-seconds";
	public static final String TIMEOUT_ENV = "FETCH_IMAGING_TIMEOUT_SECONDS";
	public static final String FORWARD_AUTH_PROPERTY = "fetch-imaging.forward-authorization";
	public static final String FORWARD_AUTH_ENV = "FETCH_IMAGING_FORWARD_AUTHORIZATION";

	public static final String FORWARD_CALLER_PROPERTY = "fetch-imaging.forward-caller";
	public static final String FORWARD_CALLER_ENV = "FETCH_IMAGING_FORWARD_CALLER";

	public static final String MAX_BODY_PROPERTY = "fetch-imaging.max-body-bytes";
	public static final String MAX_BODY_ENV = "FETCH_IMAGING_MAX_BODY_BYTES";

	public static final String DEFAULT_URL = "http://127.0.0.1:8090";
	public static final long DEFAULT_TIMEOUT_SECONDS = 60;
	/** 1 MiB: a Parameters body or form for this operation is well under 1 KiB. */
	public static final long DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

	public SidecarConfig(URI sidecarUrl, String relaySecret, Duration timeout, boolean forwardAuthorization) {
		this(sidecarUrl, relaySecret, timeout, forwardAuthorization, DEFAULT_MAX_BODY_BYTES);
	}

	public SidecarConfig(
			URI sidecarUrl, String relaySecret, Duration timeout, boolean forwardAuthorization, long maxBodyBytes) {
		this(sidecarUrl, relaySecret, timeout, forwardAuthorization, maxBodyBytes, true);
	}

	public SidecarConfig {
		if (sidecarUrl == null || sidecarUrl.getScheme() == null || sidecarUrl.getHost() == null) {
			throw new IllegalArgumentException("sidecar URL must be absolute, e.g. " + DEFAULT_URL);
		}
		if (timeout == null || timeout.isNegative() || timeout.isZero()) {
			throw new IllegalArgumentException("timeout must be positive");
		}
		if (maxBodyBytes < 0) {
			throw new IllegalArgumentException("the body limit must not be negative");
		}
	}

	/** Reads the configuration of the running JVM (system properties, then environment). */
	public static SidecarConfig fromEnvironment() {
		return from(System::getProperty, System::getenv);
	}

	/** Same as {@link #fromEnvironment()} with the two lookups injected, for tests. */
	public static SidecarConfig from(Function<String, String> systemProperties, Function<String, String> environment) {
		String url = lookup(systemProperties, environment, URL_PROPERTY, URL_ENV, DEFAULT_URL);
		String secret = lookup(systemProperties, environment, SECRET_PROPERTY, SECRET_ENV,
				lookup(systemProperties, environment, OLD_SECRET_PROPERTY, OLD_SECRET_ENV, null));
		String timeout = lookup(
				systemProperties, environment, TIMEOUT_PROPERTY, TIMEOUT_ENV, Long.toString(DEFAULT_TIMEOUT_SECONDS));
		String forwardAuth = lookup(systemProperties, environment, FORWARD_AUTH_PROPERTY, FORWARD_AUTH_ENV, "false");
		String forwardCaller = lookup(systemProperties, environment, FORWARD_CALLER_PROPERTY, FORWARD_CALLER_ENV, "true");
		String maxBody = lookup(
				systemProperties, environment, MAX_BODY_PROPERTY, MAX_BODY_ENV, Long.toString(DEFAULT_MAX_BODY_BYTES));
		return new SidecarConfig(
				URI.create(stripTrailingSlashes(url.trim())),
				secret,
				Duration.ofMillis(Math.round(Double.parseDouble(timeout.trim()) * 1000)),
				Boolean.parseBoolean(forwardAuth.trim()),
				Long.parseLong(maxBody.trim()),
				Boolean.parseBoolean(forwardCaller.trim()));
	}

	/** The sidecar's FHIR base, to which request paths such as {@code Patient/1/$fetch-imaging} are relative. */
	public String fhirBase() {
		return sidecarUrl + "/fhir";
	}

	/** scheme://host:port of the sidecar: safe to show in an error (no user info, no path). */
	public String displayAddress() {
		int port = sidecarUrl.getPort();
		return sidecarUrl.getScheme() + "://" + sidecarUrl.getHost() + (port == -1 ? "" : ":" + port);
	}

	public boolean hasRelaySecret() {
		return relaySecret != null && !relaySecret.isBlank();
	}

	@Override
	public String toString() {
		// never print the secret
		return "SidecarConfig[sidecarUrl=" + displayAddress() + ", relaySecret=" + (hasRelaySecret() ? "***" : "none")
				+ ", timeout=" + timeout + ", forwardAuthorization=" + forwardAuthorization
				+ ", maxBodyBytes=" + maxBodyBytes + ", forwardCaller=" + forwardCaller + "]";
	}

	private static String lookup(
			Function<String, String> systemProperties,
			Function<String, String> environment,
			String property,
			String env,
			String defaultValue) {
		String value = systemProperties.apply(property);
		if (value == null || value.isBlank()) {
			value = environment.apply(env);
		}
		return value == null || value.isBlank() ? defaultValue : value;
	}

	private static String stripTrailingSlashes(String url) {
		String result = url;
		while (result.endsWith("/")) {
			result = result.substring(0, result.length() - 1);
		}
		return result;
	}
}
