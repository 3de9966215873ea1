package org.dicomfhir.hapi.auth;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.KeySourceException;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.BadJOSEException;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.BadJWTException;
import com.nimbusds.jwt.proc.ConfigurableJWTProcessor;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.net.MalformedURLException;
import java.text.ParseException;
import java.time.Duration;
import java.util.List;
import java.util.Set;

/**
 * Checks a JWT access token the way a resource server must (RFC 9068 section 4, "Validating JWT
 * Access Tokens"): signature by a key of the issuer's JWKS (RS256 or ES256 only, never {@code none}
 * or an HMAC: the key set is public), {@code iss} equal to the configured issuer, {@code aud}
 * containing this FHIR server's base URL, {@code exp} in the future and {@code nbf} (if any) in the
 * past, both with a small clock skew.
 *
 * <p>The key set is fetched on first use and cached; a token whose {@code kid} is not in the cache
 * makes the source fetch the set again (key rotation), at most once per rate-limit interval, so a
 * flood of tokens with made-up key ids cannot hammer the authorization server.
 */
public final class TokenValidator {

	/** Why a token was refused: the {@code error_description} of RFC 6750 section 3 and our OperationOutcome. */
	public static final class InvalidToken extends Exception {
		private final boolean keysUnavailable;

		InvalidToken(String message, boolean keysUnavailable) {
			super(message, null, false, false);
			this.keysUnavailable = keysUnavailable;
		}

		/** The issuer's keys could not be read: the token may be fine, the server cannot tell (503). */
		public boolean keysUnavailable() {
			return keysUnavailable;
		}
	}

	static final Set<JWSAlgorithm> ALGORITHMS = Set.of(JWSAlgorithm.RS256, JWSAlgorithm.ES256);
	static final Duration KEY_CACHE_TTL = Duration.ofMinutes(15);
	static final Duration KEY_REFRESH_TIMEOUT = Duration.ofSeconds(10);
	static final Duration KEY_REFETCH_MIN_INTERVAL = Duration.ofSeconds(10);

	private final SmartAuthSettings settings;
	private final ConfigurableJWTProcessor<SecurityContext> processor;

	public TokenValidator(SmartAuthSettings settings) {
		this(settings, remoteKeys(settings));
	}

	/** With any key source, e.g. an in-memory JWKS in tests. */
	public TokenValidator(SmartAuthSettings settings, JWKSource<SecurityContext> keys) {
		this.settings = settings;
		DefaultJWTProcessor<SecurityContext> jwt = new DefaultJWTProcessor<>();
		jwt.setJWSKeySelector(new JWSVerificationKeySelector<>(ALGORITHMS, keys));
		// exp is required; iss and aud are checked below, each with its own message
		DefaultJWTClaimsVerifier<SecurityContext> times = new DefaultJWTClaimsVerifier<>(null, null, Set.of("exp"), null);
		times.setMaxClockSkew((int) settings.clockSkew().toSeconds());
		jwt.setJWTClaimsSetVerifier(times);
		this.processor = jwt;
	}

	private static JWKSource<SecurityContext> remoteKeys(SmartAuthSettings settings) {
		try {
			return JWKSourceBuilder.<SecurityContext>create(settings.jwksUrl().toURL())
					.cache(KEY_CACHE_TTL.toMillis(), KEY_REFRESH_TIMEOUT.toMillis())
					.rateLimited(KEY_REFETCH_MIN_INTERVAL.toMillis())
					.retrying(true)
					.build();
		} catch (MalformedURLException e) {
			throw new IllegalArgumentException("smart-auth.jwks-url is not a URL: " + settings.jwksUrl(), e);
		}
	}

	public SmartToken validate(String token) throws InvalidToken {
		JWTClaimsSet claims;
		try {
			claims = processor.process(token, null);
		} catch (ParseException e) {
			throw new InvalidToken("The access token is not a signed JWT", false);
		} catch (BadJWTException e) {
			String message = e.getMessage() == null ? "" : e.getMessage();
			if (message.contains("Expired")) {
				throw new InvalidToken("The access token has expired", false);
			}
			if (message.contains("before use time")) {
				throw new InvalidToken("The access token is not valid yet", false);
			}
			throw new InvalidToken("The access token lacks a required claim (exp)", false);
		} catch (BadJOSEException e) {
			if (e.getMessage() != null && e.getMessage().startsWith("Unsecured")) {
				throw new InvalidToken("The access token is not a signed JWT", false); // alg "none"
			}
			// bad signature, unknown key id, another algorithm
			throw new InvalidToken("The access token's signature does not verify with the issuer's keys", false);
		} catch (KeySourceException e) {
			throw new InvalidToken("The authorization server's signing keys could not be read", true);
		} catch (JOSEException e) {
			throw new InvalidToken("The access token's signature could not be checked", false);
		}
		if (!settings.issuer().equals(claims.getIssuer())) {
			throw new InvalidToken("The access token was issued by another authorization server", false);
		}
		List<String> audience = claims.getAudience();
		if (audience == null || !audience.contains(settings.audience())) {
			throw new InvalidToken("The access token is not meant for this FHIR server (aud)", false);
		}
		return toSmartToken(claims);
	}

	static SmartToken toSmartToken(JWTClaimsSet claims) {
		String clientId = stringClaim(claims, "azp");
		if (clientId == null) {
			clientId = stringClaim(claims, "client_id");
		}
		return new SmartToken(
				claims.getSubject(),
				clientId,
				SmartToken.scopesOf(stringClaim(claims, "scope")),
				stringClaim(claims, "patient"),
				stringClaim(claims, "fhirUser"));
	}

	private static String stringClaim(JWTClaimsSet claims, String name) {
		Object value = claims.getClaim(name);
		return value instanceof String text ? text : null;
	}
}
