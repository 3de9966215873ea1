package org.dicomfhir.hapi.auth;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.crypto.MACSigner;
import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.PlainJWT;
import com.nimbusds.jwt.SignedJWT;
import java.time.Instant;
import java.util.Date;
import java.util.List;
import org.junit.jupiter.api.Test;

class TokenValidatorTest {

	private final TestKeys issuer = new TestKeys("k1");
	private final TokenValidator validator = issuer.validator();

	private String refusal(String token) {
		return assertThrows(TokenValidator.InvalidToken.class, () -> validator.validate(token)).getMessage();
	}

	@Test
	void aGoodTokenGivesItsScopesPatientAndClient() throws Exception {
		String token = issuer.sign(TestKeys.claims("openid launch/patient patient/*.rs fhirUser")
				.claim("patient", "123")
				.claim("fhirUser", "Patient/123")
				.build());

		SmartToken smart = validator.validate(token);

		assertEquals("123", smart.patient());
		assertEquals("client-1", smart.clientId());
		assertEquals("Patient/123", smart.fhirUser());
		assertEquals(1, smart.scopes().size());
	}

	@Test
	void expiredBeyondTheSkewIsRefusedWithinItAccepted() throws Exception {
		Instant now = Instant.now();
		String stale = issuer.sign(TestKeys.claims("user/*.rs").expirationTime(Date.from(now.minusSeconds(30))).build());
		assertEquals("The access token has expired", refusal(stale));

		String justNow = issuer.sign(TestKeys.claims("user/*.rs").expirationTime(Date.from(now.minusSeconds(2))).build());
		validator.validate(justNow); // within the 5 s skew
	}

	@Test
	void notYetValidIsRefused() {
		String future = issuer.sign(TestKeys.claims("user/*.rs").notBeforeTime(Date.from(Instant.now().plusSeconds(120))).build());
		assertEquals("The access token is not valid yet", refusal(future));
	}

	@Test
	void withoutExpIsRefused() {
		String forever = issuer.sign(TestKeys.claims("user/*.rs").expirationTime(null).build());
		assertTrue(refusal(forever).contains("exp"));
	}

	@Test
	void anotherIssuerOrAudienceIsRefused() {
		assertTrue(refusal(issuer.sign(TestKeys.claims("user/*.rs").issuer("http://evil.invalid/realms/x").build()))
				.contains("another authorization server"));
		assertTrue(refusal(issuer.sign(TestKeys.claims("user/*.rs").audience(List.of("http://other.invalid/fhir")).build()))
				.contains("aud"));
		assertTrue(refusal(issuer.sign(TestKeys.claims("user/*.rs").audience((String) null).build())).contains("aud"));
	}

	@Test
	void anotherKeyWithTheSameKeyIdIsRefused() {
		TestKeys impostor = new TestKeys("k1");
		assertTrue(refusal(impostor.sign(TestKeys.claims("system/*.cruds").build())).contains("signature"));
		TestKeys unknown = new TestKeys("k2");
		assertTrue(refusal(unknown.sign(TestKeys.claims("system/*.cruds").build())).contains("signature"));
	}

	@Test
	void unsignedAndHmacTokensAreRefused() throws Exception {
		JWTClaimsSet claims = TestKeys.claims("system/*.cruds").build();
		assertTrue(refusal(new PlainJWT(claims).serialize()).contains("signed JWT"));

		// an HMAC "signed" with the public key's bytes: the classic algorithm confusion
		SignedJWT hmac = new SignedJWT(new JWSHeader.Builder(JWSAlgorithm.HS256).keyID("k1").build(), claims);
		hmac.sign(new MACSigner(issuer.key.toPublicJWK().toRSAPublicKey().getEncoded()));
		assertTrue(refusal(hmac.serialize()).contains("signature"));

		String[] parts = issuer.sign(claims).split("\\.");
		String tampered = parts[0] + "." + Base64URL.encode(TestKeys.claims("system/*.cruds").subject("x").build().toString()) + "." + parts[2];
		assertTrue(refusal(tampered).contains("signature"));
		assertTrue(refusal("garbage").contains("signed JWT"));
	}
}
