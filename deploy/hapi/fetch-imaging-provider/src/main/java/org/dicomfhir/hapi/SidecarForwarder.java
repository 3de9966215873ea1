package org.dicomfhir.hapi;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Relays one $fetch-imaging call to the sidecar and returns what the sidecar answered, or an
 * OperationOutcome when it could not be asked or did not answer with a FHIR resource. No servlet
 * types here, so it is unit-testable against a plain loopback HTTP server.
 *
 * <p>A FHIR answer (JSON whose {@code resourceType} is an R4 resource, see {@link FhirJson}) comes
 * back unchanged: status, Content-Type, body, and {@code Allow} for a 405. Anything else (an HTML
 * or text error page of a proxy or of gunicorn, an empty error body, broken or non-FHIR JSON)
 * becomes an OperationOutcome: with the same status when that is an error status (4xx/5xx), else
 * 502 (a 2xx/3xx without a resource is not a usable answer). The foreign body is never echoed.
 */
public final class SidecarForwarder {

	public static final String SECRET_HEADER = "X-Sidecar-Secret";
	public static final String REQUEST_ID_HEADER = "X-Request-Id";
	/**
	 * The caller's bearer token, for the sidecar to know who asks (its patient check, its audit).
	 * Only sent with the relay secret: the sidecar believes it because HAPI, holding the secret,
	 * checked the token before the operation ran.
	 */
	public static final String CALLER_AUTHORIZATION_HEADER = "X-Caller-Authorization";
	public static final String FHIR_JSON = "application/fhir+json";

	private final SidecarConfig config;
	private final HttpClient client;

	public SidecarForwarder(SidecarConfig config) {
		this(config, newClient(config));
	}

	public SidecarForwarder(SidecarConfig config, HttpClient client) {
		this.config = config;
		this.client = client;
	}

	public SidecarConfig config() {
		return config;
	}

	/** One HTTP/1.1 client per forwarder: the sidecar is a plain HTTP/1.1 service (no h2c upgrade). */
	public static HttpClient newClient(SidecarConfig config) {
		return HttpClient.newBuilder()
				.version(HttpClient.Version.HTTP_1_1)
				.connectTimeout(config.timeout())
				.followRedirects(HttpClient.Redirect.NEVER)
				.build();
	}

	/** What came in on the HAPI side, reduced to what the sidecar needs. */
	public record Call(
			String method,
			String relativePath,
			String rawQuery,
			byte[] body,
			String contentType,
			String accept,
			String authorization,
			String requestId) {}

	/** What goes back to the HAPI caller; {@code allow} is the sidecar's Allow header (405), else null. */
	public record Reply(int status, String contentType, byte[] body, String allow) {
		public Reply(int status, String contentType, byte[] body) {
			this(status, contentType, body, null);
		}

		public String bodyAsString() {
			return new String(body, StandardCharsets.UTF_8);
		}
	}

	public Reply forward(Call call) {
		HttpRequest request;
		try {
			request = toSidecarRequest(call);
		} catch (IllegalArgumentException e) {
			// a path or header that cannot be sent on (e.g. a control character): the caller's fault
			return new Reply(400, FHIR_JSON, operationOutcome("invalid", "The request cannot be forwarded to the imaging sidecar"));
		}
		CompletableFuture<HttpResponse<byte[]>> pending =
				client.sendAsync(request, HttpResponse.BodyHandlers.ofByteArray());
		try {
			// the request timeout only covers the response headers: bound the body too
			HttpResponse<byte[]> response = pending.get(config.timeout().toMillis() + 250, TimeUnit.MILLISECONDS);
			return relayed(response);
		} catch (TimeoutException e) {
			pending.cancel(true);
			return timedOut();
		} catch (ExecutionException e) {
			Throwable cause = e.getCause();
			if (cause instanceof HttpTimeoutException) {
				return timedOut();
			}
			// ConnectException (refused), other IOExceptions (reset, bad peer): same answer to the caller
			return unreachable();
		} catch (InterruptedException e) {
			pending.cancel(true);
			Thread.currentThread().interrupt();
			return unreachable();
		}
	}

	/** The sidecar's answer as it is when it is a FHIR resource, else an OperationOutcome in its place. */
	Reply relayed(HttpResponse<byte[]> response) {
		int status = response.statusCode();
		String contentType = response.headers().firstValue("Content-Type").orElse(null);
		String allow = response.headers().firstValue("Allow").orElse(null);
		byte[] body = response.body() == null ? new byte[0] : response.body();
		if (FhirJson.isResource(contentType, body)) {
			return new Reply(status, contentType, body, allow);
		}
		boolean errorStatus = status >= 400 && status <= 599;
		int answered = errorStatus ? status : 502;
		String code = answered == 502 || answered == 503 || answered == 504 ? "transient" : "exception";
		String diagnostics = "The imaging sidecar at " + config.displayAddress() + " answered HTTP " + status
				+ " without a FHIR resource (Content-Type " + describe(contentType) + ", " + body.length + " bytes)"
				+ (errorStatus ? "" : "; answered 502 instead") + ". The sidecar's log has the details.";
		return new Reply(answered, FHIR_JSON, operationOutcome(code, diagnostics), allow);
	}

	/** The media type of a foreign answer, reduced to token characters so nothing else of it is echoed. */
	private static String describe(String contentType) {
		String type = FhirJson.mediaType(contentType);
		if (type == null) {
			return "none";
		}
		String safe = type.replaceAll("[^a-z0-9!#$&^_.+/-]", "?");
		return safe.length() > 80 ? safe.substring(0, 80) + "..." : safe;
	}

	HttpRequest toSidecarRequest(Call call) {
		String path = call.relativePath().startsWith("/") ? call.relativePath().substring(1) : call.relativePath();
		String url = config.fhirBase() + "/" + path;
		if (call.rawQuery() != null && !call.rawQuery().isEmpty()) {
			url += "?" + escapeQuery(call.rawQuery());
		}
		byte[] body = call.body() == null ? new byte[0] : call.body();
		// a GET carries no body; a POST keeps its body (possibly empty: Content-Length 0)
		HttpRequest.BodyPublisher publisher = "GET".equalsIgnoreCase(call.method()) && body.length == 0
				? HttpRequest.BodyPublishers.noBody()
				: HttpRequest.BodyPublishers.ofByteArray(body);
		HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(url))
				.timeout(config.timeout())
				.method(call.method().toUpperCase(Locale.ROOT), publisher);
		setIfPresent(builder, "Content-Type", call.contentType());
		setIfPresent(builder, "Accept", call.accept());
		setIfPresent(builder, REQUEST_ID_HEADER, call.requestId());
		if (config.forwardAuthorization()) {
			setIfPresent(builder, "Authorization", call.authorization());
		}
		if (config.hasRelaySecret()) {
			builder.header(SECRET_HEADER, config.relaySecret());
			String bearer = config.forwardCaller() ? bearerToken(call.authorization()) : null;
			if (bearer != null) {
				builder.header(CALLER_AUTHORIZATION_HEADER, "Bearer " + bearer);
			}
		}
		return builder.build();
	}

	/** The token of an {@code Authorization: Bearer <token>} header (RFC 6750 section 2.1); null for any other scheme. */
	static String bearerToken(String authorization) {
		if (authorization == null) {
			return null;
		}
		String[] parts = authorization.trim().split("\\s+", 2);
		if (parts.length != 2 || !"bearer".equals(parts[0].toLowerCase(Locale.ROOT)) || parts[1].isBlank()) {
			return null;
		}
		return parts[1].trim();
	}

	/**
	 * The raw query as the caller sent it, with characters that are illegal in a URI query escaped.
	 * Tomcat lets FHIR's {@code |} (and {@code []{}}) through unescaped (relaxed-query-chars), but
	 * java.net.URI rejects them; existing %XX escapes and all legal characters stay as they are, so
	 * the sidecar decodes exactly the values the caller meant.
	 */
	static String escapeQuery(String rawQuery) {
		StringBuilder out = new StringBuilder(rawQuery.length() + 16);
		byte[] bytes = rawQuery.getBytes(StandardCharsets.UTF_8);
		for (int i = 0; i < bytes.length; i++) {
			int b = bytes[i] & 0xff;
			boolean escape = b == '%' ? !(i + 2 < bytes.length && isHex(bytes[i + 1]) && isHex(bytes[i + 2])) : !isLegalInQuery(b);
			if (escape) {
				out.append('%').append(String.format("%02X", b));
			} else {
				out.append((char) b);
			}
		}
		return out.toString();
	}

	private static boolean isLegalInQuery(int c) {
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
				|| "-._~!$&'()*+,;=:@/?".indexOf(c) >= 0;
	}

	private static boolean isHex(byte b) {
		return Character.digit(b, 16) >= 0;
	}

	private Reply unreachable() {
		return new Reply(
				502,
				FHIR_JSON,
				operationOutcome(
						"transient",
						"The imaging sidecar could not be reached at " + config.displayAddress()
								+ "; is it running?"));
	}

	private Reply timedOut() {
		return new Reply(
				504,
				FHIR_JSON,
				operationOutcome(
						"timeout",
						"The imaging sidecar at " + config.displayAddress() + " did not answer within "
								+ config.timeout().toMillis() / 1000.0 + " s"));
	}

	/** A minimal OperationOutcome, written by hand so the error path needs no FhirContext. */
	static byte[] operationOutcome(String code, String diagnostics) {
		String json = "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\""
				+ code + "\",\"diagnostics\":\"" + jsonEscape(diagnostics) + "\"}]}";
		return json.getBytes(StandardCharsets.UTF_8);
	}

	private static String jsonEscape(String text) {
		StringBuilder out = new StringBuilder(text.length());
		for (char c : text.toCharArray()) {
			switch (c) {
				case '"' -> out.append("\\\"");
				case '\\' -> out.append("\\\\");
				case '\n' -> out.append("\\n");
				case '\r' -> out.append("\\r");
				case '\t' -> out.append("\\t");
				default -> {
					if (c < 0x20) {
						out.append(String.format("\\u%04x", (int) c));
					} else {
						out.append(c);
					}
				}
			}
		}
		return out.toString();
	}

	private static void setIfPresent(HttpRequest.Builder builder, String name, String value) {
		if (value != null && !value.isBlank()) {
			builder.header(name, value);
		}
	}
}
