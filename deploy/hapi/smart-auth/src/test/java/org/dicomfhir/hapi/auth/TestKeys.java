package org.dicomfhir.hapi.auth;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSSigner;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.gen.RSAKeyGenerator;
import com.nimbusds.jose.jwk.source.ImmutableJWKSet;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import java.net.URI;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import java.util.List;

/** An issuer for tests: a key pair generated here, and tokens signed with it. */
final class TestKeys {

	static final String ISSUER = "http://127.0.0.1:1/realms/test";
	static final String AUDIENCE = "http://127.0.0.1:2/fhir";

	final RSAKey key;

	TestKeys(String kid) {
		try {
			key = new RSAKeyGenerator(2048).keyID(kid).generate();
		} catch (JOSEException e) {
			throw new IllegalStateException(e);
		}
	}

	static SmartAuthSettings settings() {
		return new SmartAuthSettings(
				ISSUER, AUDIENCE, URI.create(ISSUER + "/certs"), ISSUER + "/auth", ISSUER + "/token",
				Duration.ofSeconds(5), List.of());
	}

	TokenValidator validator() {
		return new TokenValidator(settings(), new ImmutableJWKSet<SecurityContext>(new JWKSet(key.toPublicJWK())));
	}

	static JWTClaimsSet.Builder claims(String scope) {
		Instant now = Instant.now();
		return new JWTClaimsSet.Builder()
				.issuer(ISSUER)
				.audience(List.of(AUDIENCE, "account"))
				.subject("user-1")
				.issueTime(Date.from(now))
				.expirationTime(Date.from(now.plusSeconds(300)))
				.claim("azp", "client-1")
				.claim("scope", scope);
	}

	String sign(JWTClaimsSet claims) {
		return sign(claims, key);
	}

	static String sign(JWTClaimsSet claims, RSAKey with) {
		try {
			JWSSigner signer = new RSASSASigner(with);
			SignedJWT jwt = new SignedJWT(new JWSHeader.Builder(JWSAlgorithm.RS256).keyID(with.getKeyID()).build(), claims);
			jwt.sign(signer);
			return jwt.serialize();
		} catch (JOSEException e) {
			throw new IllegalStateException(e);
		}
	}
}
