package org.dicomfhir.hapi;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/** A fake sidecar: the JDK's HttpServer on an ephemeral loopback port, recording every request. */
final class FakeSidecar implements AutoCloseable {

	static final String BUNDLE = "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":0}";

	/** What the fake sidecar saw of one request. */
	record Seen(String method, String rawPath, String rawQuery, Map<String, List<String>> headers, byte[] body) {
		String header(String name) {
			return headers.entrySet().stream()
					.filter(e -> e.getKey().equalsIgnoreCase(name))
					.map(e -> e.getValue().get(0))
					.findFirst()
					.orElse(null);
		}

		String bodyAsString() {
			return new String(body, StandardCharsets.UTF_8);
		}
	}

	private final HttpServer server;
	private final List<Seen> requests = new CopyOnWriteArrayList<>();
	private final CountDownLatch releaseSlowPeer = new CountDownLatch(1);
	volatile int replyStatus = 200;
	volatile String replyContentType = "application/fhir+json;charset=utf-8";
	volatile String replyBody = BUNDLE;
	volatile String replyAllow = null;
	volatile long replyDelayMillis = 0;

	FakeSidecar() throws IOException {
		server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
		server.createContext("/", this::answer);
		server.setExecutor(Executors.newCachedThreadPool());
		server.start();
	}

	URI url() {
		return URI.create("http://127.0.0.1:" + server.getAddress().getPort());
	}

	SidecarConfig config(String secret, double timeoutSeconds, boolean forwardAuthorization) {
		return new SidecarConfig(url(), secret, Duration.ofMillis((long) (timeoutSeconds * 1000)), forwardAuthorization);
	}

	/** The last request, or null when none came. */
	Seen seen() {
		return requests.isEmpty() ? null : requests.get(requests.size() - 1);
	}

	List<Seen> requests() {
		return requests;
	}

	@Override
	public void close() {
		releaseSlowPeer.countDown();
		server.stop(0);
	}

	private void answer(HttpExchange exchange) throws IOException {
		byte[] body = exchange.getRequestBody().readAllBytes();
		requests.add(new Seen(
				exchange.getRequestMethod(),
				exchange.getRequestURI().getRawPath(),
				exchange.getRequestURI().getRawQuery(),
				Map.copyOf(exchange.getRequestHeaders()),
				body));
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
		if (replyAllow != null) {
			exchange.getResponseHeaders().add("Allow", replyAllow);
		}
		exchange.sendResponseHeaders(replyStatus, out.length == 0 ? -1 : out.length);
		exchange.getResponseBody().write(out);
		exchange.close();
	}
}
