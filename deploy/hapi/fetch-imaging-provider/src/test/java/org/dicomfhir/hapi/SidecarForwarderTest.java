package org.dicomfhir.hapi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.servlet.ServletRequestDetails;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.hl7.fhir.r4.model.IdType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.springframework.mock.web.MockHttpServletRequest;
import org.springframework.mock.web.MockHttpServletResponse;

/** Forwarding against a fake sidecar (the JDK's HttpServer on an ephemeral loopback port). */
class SidecarForwarderTest {

	private static final String BUNDLE = "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":0}";

	/** What the fake sidecar saw of the last request. */
	private record Seen(String method, String rawPath, String rawQuery, Map<String, List<String>> headers, byte[] body) {
		String header(String name) {
			return headers.entrySet().stream()
					.filter(e -> e.getKey().equalsIgnoreCase(name))
					.map(e -> e.getValue().get(0))
					.findFirst()
					.orElse(null);
		}
	}

	private HttpServer peer;
	private volatile Seen seen;
	private volatile int replyStatus = 200;
	private volatile String replyContentType = "application/fhir+json;charset=utf-8";
	private volatile String replyBody = BUNDLE;
	private volatile long replyDelayMillis = 0;
	private final CountDownLatch releaseSlowPeer = new CountDownLatch(1);

	@BeforeEach
	void startPeer() throws IOException {
		peer = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
		peer.createContext("/", this::answer);
		peer.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
		peer.start();
	}

	@AfterEach
	void stopPeer() {
		releaseSlowPeer.countDown();
		peer.stop(0);
	}

	private void answer(HttpExchange exchange) throws IOException {
		byte[] body = exchange.getRequestBody().readAllBytes();
		seen = new Seen(
				exchange.getRequestMethod(),
				exchange.getRequestURI().getRawPath(),
				exchange.getRequestURI().getRawQuery(),
				Map.copyOf(exchange.getRequestHeaders()),
				body);
		if (replyDelayMillis > 0) {
			try {
				releaseSlowPeer.await(replyDelayMillis, TimeUnit.MILLISECONDS);
			} catch (InterruptedException e) {
				Thread.currentThread().interrupt();
			}
		}
		byte[] out = replyBody.getBytes(StandardCharsets.UTF_8);
		if (replyContentType != null) {
			exchange.getResponseHeaders().add("Content-Type", replyContentType);
		}
		exchange.sendResponseHeaders(replyStatus, out.length == 0 ? -1 : out.length);
		exchange.getResponseBody().write(out);
		exchange.close();
	}

	private SidecarConfig config(String secret, double timeoutSeconds, boolean forwardAuthorization) {
		return new SidecarConfig(
				URI.create("http://127.0.0.1:" + peer.getAddress().getPort()),
				secret,
				Duration.ofMillis((long) (timeoutSeconds * 1000)),
				forwardAuthorization);
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

		assertEquals("GET", seen.method());
		assertEquals("/fhir/Patient/p-1/$fetch-imaging", seen.rawPath());
		assertEquals("modality=CT&studyDate=ge2020-01-01&detail=series", seen.rawQuery());
		assertEquals(0, seen.body().length);
		assertEquals("s3cret", seen.header("X-Sidecar-Secret"));
		assertEquals("application/fhir+json", seen.header("Accept"));
		assertEquals("req-42", seen.header("X-Request-Id"));
		assertNull(seen.header("Authorization"), "caller's Authorization must not reach the sidecar by default");

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

		assertEquals("POST", seen.method());
		assertEquals("/fhir/Patient/$fetch-imaging", seen.rawPath());
		assertEquals("identifier=urn%3Aoid%3A1.2.3%7CMRN-7", seen.rawQuery());
		assertArrayEquals(parameters, seen.body());
		assertEquals("application/fhir+json", seen.header("Content-Type"));
		assertNull(seen.header("X-Sidecar-Secret"), "no secret configured, none sent");
		assertNull(seen.header("X-Request-Id"));
	}

	@Test
	void fhirTokenBarAndBracketsAreEscapedOnTheWayExistingEscapesKept() {
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));

		SidecarForwarder.Reply reply = forwarder.forward(
				get("Patient/$fetch-imaging", "identifier=urn:mrn|M1&x=[a]{b}&y=%7C&z=100%", null));

		assertEquals(200, reply.status());
		assertEquals("identifier=urn:mrn%7CM1&x=%5Ba%5D%7Bb%7D&y=%7C&z=100%25", seen.rawQuery());
	}

	@Test
	void postWithoutBodyIsStillAPost() {
		SidecarForwarder forwarder = new SidecarForwarder(config("x", 5, false));

		forwarder.forward(new SidecarForwarder.Call("POST", "Patient/1/$fetch-imaging", null, new byte[0], null, null, null, null));

		assertEquals("POST", seen.method());
		assertNull(seen.rawQuery());
		assertEquals(0, seen.body().length);
	}

	@Test
	void authorizationIsForwardedUnchangedWhenConfigured() {
		SidecarForwarder forwarder = new SidecarForwarder(config("s3cret", 5, true));

		forwarder.forward(get("Patient/1/$fetch-imaging", null, "Bearer caller-token"));

		assertEquals("Bearer caller-token", seen.header("Authorization"));
		assertEquals("s3cret", seen.header("X-Sidecar-Secret"));
	}

	@Test
	void sidecarErrorStatusContentTypeAndBodyAreRelayedUnchanged() {
		replyStatus = 404;
		replyContentType = "application/fhir+json";
		replyBody = "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"not-found\"}]}";
		SidecarForwarder forwarder = new SidecarForwarder(config(null, 5, false));

		SidecarForwarder.Reply reply = forwarder.forward(get("Patient/nope/$fetch-imaging", null, null));

		assertEquals(404, reply.status());
		assertEquals("application/fhir+json", reply.contentType());
		assertEquals(replyBody, reply.bodyAsString());
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
		replyDelayMillis = 10_000;
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
		replyStatus = 202;
		replyContentType = "application/fhir+json";
		replyBody = "{\"resourceType\":\"Bundle\"}";
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

		assertEquals("POST", seen.method());
		assertEquals("/fhir/Patient/p+1/$fetch-imaging", seen.rawPath());
		assertEquals("detail=study", seen.rawQuery());
		assertEquals("{\"resourceType\":\"Parameters\"}", new String(seen.body(), StandardCharsets.UTF_8));
		assertEquals("abc", seen.header("X-Request-Id"));
		assertNull(seen.header("Authorization"));
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
