package org.dicomfhir.hapi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.servlet.ServletRequestDetails;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.hl7.fhir.r4.model.IdType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.springframework.mock.web.MockHttpServletRequest;
import org.springframework.mock.web.MockHttpServletResponse;

/** Forwarding against a fake sidecar (the JDK's HttpServer on an ephemeral loopback port). */
class SidecarForwarderTest {

	private static final String BUNDLE = FakeSidecar.BUNDLE;

	private FakeSidecar peer;

	@BeforeEach
	void startPeer() throws IOException {
		peer = new FakeSidecar();
	}

	@AfterEach
	void stopPeer() {
		peer.close();
	}

	private SidecarConfig config(String secret, double timeoutSeconds, boolean forwardAuthorization) {
		return peer.config(secret, timeoutSeconds, forwardAuthorization);
	}

	private static SidecarForwarder.Call get(String path, String query, String authorization) {
		return new SidecarForwarder.Call(
				"GET", path, query, null, null, "application/fhir+json", authorization, "req-42");
	}

	@Test
	void instanceGetIsForwardedToTheSamePathUnderTheSidecarFhirBase() {
		SidecarForwarder forwarder = new SidecarForwarder(config("s3cret", 5, false));

		SidecarForwarder.Reply reply = forwarder.forward(
				get("Patient/p-1/$fetch-imaging", "modality=CT&studyDate=ge2020-01-01&detail=series", "Bearer caller"));

		assertEquals("GET", peer.seen().method());
		assertEquals("/fhir/Patient/p-1/$fetch-imaging", peer.seen().rawPath());
		assertEquals("modality=CT&studyDate=ge2020-01-01&detail=series", peer.seen().rawQuery());
		assertEquals(0, peer.seen().body().length);
		assertEquals("s3cret", peer.seen().header("X-Sidecar-Secret"));
		assertEquals("application/fhir+json", peer.seen().header("Accept"));
		assertEquals("req-42", peer.seen().header("X-Request-Id"));
		assertNull(peer.seen().header("Authorization"), "caller's Authorization must not reach the sidecar by default");

		assertEquals(200, reply.status());
		assertEquals("application/fhir+json;charset=utf-8", reply.contentType());
		assertEquals(BUNDLE, reply.bodyAsString());
	}

	@Test
	void typeLevelPostKeepsBodyContentTypeAndEncodedQuery() {
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));
		byte[] parameters = "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"persist\",\"valueBoolean\":false}]}"
				.getBytes(StandardCharsets.UTF_8);

		forwarder.forward(new SidecarForwarder.Call(
				"POST",
				"Patient/$fetch-imaging",
				"identifier=urn%3Aoid%3A1.2.3%7CMRN-7",
				parameters,
				"application/fhir+json",
				null,
				null,
				null));

		assertEquals("POST", peer.seen().method());
		assertEquals("/fhir/Patient/$fetch-imaging", peer.seen().rawPath());
		assertEquals("identifier=urn%3Aoid%3A1.2.3%7CMRN-7", peer.seen().rawQuery());
		assertArrayEquals(parameters, peer.seen().body());
		assertEquals("application/fhir+json", peer.seen().header("Content-Type"));
		assertNull(peer.seen().header("X-Sidecar-Secret"), "no secret configured, none sent");
		assertNull(peer.seen().header("X-Request-Id"));
	}

	@Test
	void fhirTokenBarAndBracketsAreEscapedOnTheWayExistingEscapesKept() {
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));

		SidecarForwarder.Reply reply = forwarder.forward(
				get("Patient/$fetch-imaging", "identifier=urn:mrn|M1&x=[a]{b}&y=%7C&z=100%", null));

		assertEquals(200, reply.status());
		assertEquals("identifier=urn:mrn%7CM1&x=%5Ba%5D%7Bb%7D&y=%7C&z=100%25", peer.seen().rawQuery());
	}

	@Test
	void postWithoutBodyIsStillAPost() {
		SidecarForwarder forwarder = new SidecarForwarder(config("x", 5, false));

		forwarder.forward(new SidecarForwarder.Call("POST", "Patient/1/$fetch-imaging", null, new byte[0], null, null, null, null));

		assertEquals("POST", peer.seen().method());
		assertNull(peer.seen().rawQuery());
		assertEquals(0, peer.seen().body().length);
	}

	@Test
	void authorizationIsForwardedUnchangedWhenConfigured() {
		SidecarForwarder forwarder = new SidecarForwarder(config("s3cret", 5, true));

		forwarder.forward(get("Patient/1/$fetch-imaging", null, "Bearer caller-token"));

		assertEquals("Bearer caller-token", peer.seen().header("Authorization"));
		assertEquals("s3cret", peer.seen().header("X-Sidecar-Secret"));
	}

	@Test
	void theCallersBearerTokenGoesAlongWithTheRelaySecret() {
		SidecarForwarder forwarder = new SidecarForwarder(config("s3cret", 5, false));

		forwarder.forward(get("Patient/1/$fetch-imaging", null, "bearer   caller-token "));

		assertEquals("Bearer caller-token", peer.seen().header("X-Caller-Authorization"));
		assertEquals("s3cret", peer.seen().header("X-Sidecar-Secret"));
		assertNull(peer.seen().header("Authorization"), "Authorization itself stays with HAPI");
	}

	@Test
	void noCallerTokenWithoutTheRelaySecretNorForOtherSchemes() {
		new SidecarForwarder(config(null, 5, false)).forward(get("Patient/1/$fetch-imaging", null, "Bearer t"));
		assertNull(peer.seen().header("X-Caller-Authorization"), "without the secret the sidecar could not trust it");

		new SidecarForwarder(config("s3cret", 5, false)).forward(get("Patient/1/$fetch-imaging", null, "Basic dXNlcjpwdw=="));
		assertNull(peer.seen().header("X-Caller-Authorization"), "a password is never passed on");

		new SidecarForwarder(config("s3cret", 5, false)).forward(get("Patient/1/$fetch-imaging", null, null));
		assertNull(peer.seen().header("X-Caller-Authorization"));
	}

	@Test
	void theCallerTokenCanBeKeptBack() {
		SidecarConfig config = new SidecarConfig(peer.url(), "s3cret", Duration.ofSeconds(5), false, 1024, false);

		new SidecarForwarder(config).forward(get("Patient/1/$fetch-imaging", null, "Bearer t"));

		assertNull(peer.seen().header("X-Caller-Authorization"));
	}

	@Test
	void sidecarErrorStatusContentTypeAndBodyAreRelayedUnchanged() {
		peer.replyStatus = 404;
		peer.replyContentType = "application/fhir+json";
		peer.replyBody = "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"not-found\"}]}";
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));

		SidecarForwarder.Reply reply = forwarder.forward(get("Patient/nope/$fetch-imaging", null, null));

		assertEquals(404, reply.status());
		assertEquals("application/fhir+json", reply.contentType());
		assertEquals(peer.replyBody, reply.bodyAsString());
	}

	@Test
	void nonFhirErrorAnswersBecomeOperationOutcomesWithTheSameStatus() {
		String[][] answers = {
			// status, Content-Type, body: a proxy's page, gunicorn's text, an empty body, non-FHIR JSON, broken JSON
			{"502", "text/html", "<html><body>502 Bad Gateway secret-host</body></html>"},
			{"500", "text/plain", "Internal Server Error: Traceback secret"},
			{"500", null, ""},
			{"503", "application/json", "{\"error\":\"secret\"}"},
			{"404", "application/fhir+json", "not json secret"},
			{"400", "application/fhir+json", "[{\"resourceType\":\"OperationOutcome\"}]"},
			{"500", "application/fhir+json", "{\"resourceType\":\"NoSuchSecretType\"}"},
			{"500", "application/fhir+json", "{\"resourceType\":\"Bundle\"} secret"},
			{"401", "text/html; charset=\"<script>\"", "<h1>secret</h1>"},
		};
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));
		for (String[] answer : answers) {
			peer.replyStatus = Integer.parseInt(answer[0]);
			peer.replyContentType = answer[1];
			peer.replyBody = answer[2];

			SidecarForwarder.Reply reply = forwarder.forward(get("Patient/1/$fetch-imaging", null, null));

			String body = reply.bodyAsString();
			String what = String.join(" ", java.util.Arrays.asList(answer)) + " -> " + body;
			assertEquals(peer.replyStatus, reply.status(), what);
			assertEquals("application/fhir+json", reply.contentType(), what);
			assertTrue(body.startsWith("{\"resourceType\":\"OperationOutcome\""), what);
			String code = answer[0].equals("502") || answer[0].equals("503") ? "transient" : "exception";
			assertTrue(body.contains("\"code\":\"" + code + "\""), what);
			assertTrue(body.contains("HTTP " + answer[0]), what);
			assertFalse(body.contains("secret") || body.contains("<"), "the foreign body is not echoed: " + what);
		}
	}

	@Test
	void aSuccessWithoutAFhirResourceBecomes502() {
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));
		for (String[] answer : new String[][] {
			{"application/json", "{\"hello\":\"world\"}"},
			{"application/fhir+json", "{\"resourceType\":\"Bundle\","},
			{"text/html", "<html>ok</html>"},
		}) {
			peer.replyStatus = 200;
			peer.replyContentType = answer[0];
			peer.replyBody = answer[1];

			SidecarForwarder.Reply reply = forwarder.forward(get("Patient/1/$fetch-imaging", null, null));

			assertEquals(502, reply.status(), answer[1]);
			assertEquals("application/fhir+json", reply.contentType());
			assertTrue(reply.bodyAsString().contains("answered HTTP 200 without a FHIR resource"), reply.bodyAsString());
			assertTrue(reply.bodyAsString().contains("\"code\":\"transient\""), reply.bodyAsString());
		}
	}

	@Test
	void aFhirAnswerIsRelayedUnchangedWithTheAllowHeaderOfA405() {
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));
		peer.replyStatus = 405;
		peer.replyContentType = "application/json";
		peer.replyAllow = "POST";
		peer.replyBody = "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"not-supported\","
				+ "\"diagnostics\":\"a fetch that writes is a POST\"}]}";

		SidecarForwarder.Reply reply = forwarder.forward(get("Patient/1/$fetch-imaging", "detail=study", null));

		assertEquals("GET", peer.seen().method());
		assertEquals(405, reply.status());
		assertEquals("application/json", reply.contentType());
		assertEquals(peer.replyBody, reply.bodyAsString());
		assertEquals("POST", reply.allow());
	}

	@Test
	void refusedConnectionBecomes502TransientOperationOutcomeWithoutSecrets() throws IOException {
		int closedPort;
		try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
			closedPort = socket.getLocalPort();
		}
		SidecarConfig config = new SidecarConfig(
				URI.create("http://127.0.0.1:" + closedPort), "top-secret-value", Duration.ofSeconds(5), false);

		SidecarForwarder.Reply reply =
				new SidecarForwarder(config).forward(get("Patient/1/$fetch-imaging", null, "Bearer caller"));

		assertEquals(502, reply.status());
		assertEquals("application/fhir+json", reply.contentType());
		String body = reply.bodyAsString();
		assertTrue(body.contains("\"resourceType\":\"OperationOutcome\""), body);
		assertTrue(body.contains("\"severity\":\"error\""), body);
		assertTrue(body.contains("\"code\":\"transient\""), body);
		assertTrue(body.contains("could not be reached"), body);
		assertFalse(body.contains("top-secret-value"), body);
		assertFalse(body.contains("Bearer"), body);
	}

	@Test
	void slowSidecarBecomes504WithinTheConfiguredTimeout() {
		peer.replyDelayMillis = 10_000;
		SidecarForwarder forwarder = new SidecarForwarder(config("s3cret", 0.5, false));

		long started = System.nanoTime();
		SidecarForwarder.Reply reply = forwarder.forward(get("Patient/1/$fetch-imaging", null, null));
		long elapsedMillis = (System.nanoTime() - started) / 1_000_000;

		assertEquals(504, reply.status());
		assertEquals("application/fhir+json", reply.contentType());
		assertTrue(reply.bodyAsString().contains("\"code\":\"timeout\""), reply.bodyAsString());
		assertFalse(reply.bodyAsString().contains("s3cret"));
		assertTrue(elapsedMillis >= 400 && elapsedMillis < 3_000, "took " + elapsedMillis + " ms");
	}

	@Test
	void providerRelaysAServletRequestAndWritesTheReplyBack() throws IOException {
		peer.replyStatus = 202;
		peer.replyContentType = "application/fhir+json";
		peer.replyBody = "{\"resourceType\":\"Bundle\"}";
		FetchImagingProvider provider = new FetchImagingProvider(new SidecarForwarder(config("s3cret", 5, false)));

		MockHttpServletRequest request = new MockHttpServletRequest("POST", "/fhir/Patient/p%201/$fetch-imaging");
		request.setQueryString("detail=study");
		request.setContentType("application/fhir+json");
		request.setContent("{\"resourceType\":\"Parameters\"}".getBytes(StandardCharsets.UTF_8));
		request.addHeader("Authorization", "Bearer caller");
		request.addHeader("X-Request-Id", "abc");
		ServletRequestDetails details = new ServletRequestDetails();
		details.setServletRequest(request);
		details.setServer(new RestfulServer(FhirContext.forR4Cached()));
		MockHttpServletResponse response = new MockHttpServletResponse();

		provider.fetchImaging(new IdType("Patient", "p 1"), null, null, null, null, null, null, null, details, request, response);

		assertEquals("POST", peer.seen().method());
		assertEquals("/fhir/Patient/p+1/$fetch-imaging", peer.seen().rawPath());
		assertEquals("detail=study", peer.seen().rawQuery());
		assertEquals("{\"resourceType\":\"Parameters\"}", new String(peer.seen().body(), StandardCharsets.UTF_8));
		assertEquals("abc", peer.seen().header("X-Request-Id"));
		assertNull(peer.seen().header("Authorization"));
		assertEquals(202, response.getStatus());
		assertEquals("application/fhir+json", response.getContentType());
		assertEquals("{\"resourceType\":\"Bundle\"}", response.getContentAsString());
	}

	@Test
	void typeLevelPathHasNoId() {
		assertEquals("Patient/$fetch-imaging", FetchImagingProvider.relativePath(null));
		assertEquals("Patient/$fetch-imaging", FetchImagingProvider.relativePath(new IdType()));
		assertEquals("Patient/abc-1/$fetch-imaging", FetchImagingProvider.relativePath(new IdType("Patient/abc-1")));
	}
}
