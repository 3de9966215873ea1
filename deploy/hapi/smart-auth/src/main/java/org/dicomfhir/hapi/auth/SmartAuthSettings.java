package org.dicomfhir.hapi.auth;

import java.net.URI;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

/**
 * Whose tokens HAPI accepts and for which FHIR server. Each value is a Java system property, else
 * an environment variable, else a default, so the same jar is configured the same way in our
 * server and in the hapiproject/hapi image (env only).
 *
 * <p>Enforcement is on when an issuer is set; without one every interceptor of this jar lets
 * everything through (a server without an authorization server keeps working as before).
 *
 * @param issuer                the authorization server's issuer ({@code iss} must equal it)
 * @param audience              this FHIR server's base URL ({@code aud} must contain it)
 * @param jwksUrl               the issuer's signing keys (JWKS)
 * @param authorizationEndpoint advertised in smart-configuration and the CapabilityStatement
 * @param tokenEndpoint         likewise
 * @param clockSkew             tolerance for {@code exp}/{@code nbf}
 * @param corsOrigins           origins of browser apps allowed to call this server
 */
public record SmartAuthSettings(
		String issuer,
		String audience,
		URI jwksUrl,
		String authorizationEndpoint,
		String tokenEndpoint,
		Duration clockSkew,
		List<String> corsOrigins) {

	/** Keycloak's OIDC paths below the issuer (realm) URL: the defaults for the three endpoints. */
	static final String KEYCLOAK_OIDC = "/protocol/openid-connect";

	public static final Duration DEFAULT_CLOCK_SKEW = Duration.ofSeconds(5);

	public static SmartAuthSettings disabled() {
		return new SmartAuthSettings(null, null, null, null, null, DEFAULT_CLOCK_SKEW, List.of());
	}

	public boolean enabled() {
		return issuer != null;
	}

	public static SmartAuthSettings fromEnvironment() {
		return from(System::getProperty, System::getenv);
	}

	/** The settings from system properties ({@code smart-auth.issuer}), else env ({@code SMART_AUTH_ISSUER}). */
	public static SmartAuthSettings from(Function<String, String> properties, Function<String, String> environment) {
		Function<String, String> read = name -> lookup(properties, environment, name);
		List<String> origins = read.apply("cors-origins") == null
				? List.of()
				: Arrays.stream(read.apply("cors-origins").split(","))
						.map(String::trim)
						.filter(o -> !o.isEmpty())
						.toList();
		String issuer = read.apply("issuer");
		if (issuer == null) {
			return new SmartAuthSettings(null, null, null, null, null, DEFAULT_CLOCK_SKEW, origins);
		}
		issuer = stripTrailingSlash(issuer);
		String audience = read.apply("audience");
		if (audience == null) {
			throw new IllegalArgumentException(
					"smart-auth.issuer is set but smart-auth.audience (SMART_AUTH_AUDIENCE) is not: the FHIR base URL tokens must name");
		}
		String jwks = orDefault(read.apply("jwks-url"), issuer + KEYCLOAK_OIDC + "/certs");
		String skew = orDefault(read.apply("clock-skew-seconds"), Long.toString(DEFAULT_CLOCK_SKEW.toSeconds()));
		return new SmartAuthSettings(
				issuer,
				stripTrailingSlash(audience),
				URI.create(jwks),
				orDefault(read.apply("authorization-endpoint"), issuer + KEYCLOAK_OIDC + "/auth"),
				orDefault(read.apply("token-endpoint"), issuer + KEYCLOAK_OIDC + "/token"),
				Duration.ofSeconds(Long.parseLong(skew.trim())),
				origins);
	}

	/** {@code smart-auth.NAME} as a system property, else {@code SMART_AUTH_NAME} in the environment. */
	private static String lookup(Function<String, String> properties, Function<String, String> environment, String name) {
		String value = properties.apply("smart-auth." + name);
		if (value == null || value.isBlank()) {
			value = environment.apply("SMART_AUTH_" + name.toUpperCase().replace('-', '_'));
		}
		return value == null || value.isBlank() ? null : value.trim();
	}

	private static String orDefault(String value, String defaultValue) {
		return value == null ? defaultValue : value;
	}

	private static String stripTrailingSlash(String url) {
		String result = url;
		while (result.endsWith("/")) {
			result = result.substring(0, result.length() - 1);
		}
		return result;
	}
}
