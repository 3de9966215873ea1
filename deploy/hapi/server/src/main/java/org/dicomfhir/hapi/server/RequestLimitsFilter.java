package org.dicomfhir.hapi.server;

import jakarta.servlet.FilterChain;
import jakarta.servlet.ReadListener;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletInputStream;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletRequestWrapper;
import jakarta.servlet.http.HttpServletResponse;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import org.springframework.web.filter.OncePerRequestFilter;

/**
 * The request limits of this server, answered with an OperationOutcome and the status that says
 * which limit it was (Tomcat itself can only answer 400 for all of them, see
 * {@link OperationOutcomeErrorReportValve}). Tomcat's own limits are set higher
 * ({@code server.max-http-request-header-size}, the connector's maxHeaderCount) so that requests
 * up to them reach this filter:
 *
 * <ul>
 *   <li>a method FHIR's REST API does not use (TRACE, made-up ones): 405 with {@code Allow};
 *   <li>request target (path and query) longer than {@code maxUriLength} characters: 414;
 *   <li>header fields larger than {@code maxHeaderBytes} in all ({@code name: value\r\n} each) or more
 *       than {@code maxHeaderCount} of them: 431;
 *   <li>a Content-Length over {@code maxBodyBytes}: 413 before the body is read; a body without one
 *       (chunked) fails to be read past that size (HAPI then answers its own 400 OperationOutcome);
 *   <li>a query string with a {@code %} not followed by two hex digits: 400 (HAPI's URL decoder would
 *       throw and answer 500); the same for the body of a form POST that has a query string, which HAPI
 *       decodes the same way (that body is read here, checked, and handed on unchanged).
 * </ul>
 */
public class RequestLimitsFilter extends OncePerRequestFilter {

	/** The HTTP methods of FHIR's RESTful API (R4 http.html), and HEAD/OPTIONS; others: 405. */
	static final java.util.List<String> FHIR_METHODS =
			java.util.List.of("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS");

	private final HapiProperties.Limits limits;

	public RequestLimitsFilter(HapiProperties.Limits limits) {
		this.limits = limits;
	}

	@Override
	protected void doFilterInternal(HttpServletRequest request, HttpServletResponse response, FilterChain chain)
			throws ServletException, IOException {
		if (!FHIR_METHODS.contains(request.getMethod())) {
			// Tomcat and the servlet API answer an unknown method with 501 (a 5xx for client input)
			response.setHeader("Allow", String.join(", ", FHIR_METHODS));
			refuse(response, 405, "The method " + request.getMethod() + " is not used by FHIR's REST API.");
			return;
		}
		String query = request.getQueryString();
		long uriLength = request.getRequestURI().length() + (query == null ? 0 : 1 + query.length());
		if (uriLength > limits.getMaxUriLength()) {
			refuse(response, 414, "The request URI is " + uriLength + " characters long; this server accepts at most "
					+ limits.getMaxUriLength() + ". Send the parameters in a POST body instead.");
			return;
		}
		int count = 0;
		long headerBytes = 0;
		for (String name : Collections.list(request.getHeaderNames())) {
			for (String value : Collections.list(request.getHeaders(name))) {
				count++;
				headerBytes += name.length() + 2 + value.length() + 2;
			}
		}
		if (count > limits.getMaxHeaderCount() || headerBytes > limits.getMaxHeaderBytes()) {
			refuse(response, 431, "The request has " + count + " header fields of " + headerBytes
					+ " bytes; this server accepts at most " + limits.getMaxHeaderCount() + " fields of "
					+ limits.getMaxHeaderBytes() + " bytes in all.");
			return;
		}
		long maxBody = limits.getMaxBodySize().toBytes();
		if (request.getContentLengthLong() > maxBody) {
			response.setHeader("Connection", "close"); // the unread body is not worth swallowing
			refuse(response, 413, "The request body has " + request.getContentLengthLong()
					+ " bytes; this server accepts at most " + maxBody + ".");
			return;
		}
		if (query != null && !wellEscaped(query)) {
			refuse(response, 400, "The query string has a '%' that is not followed by two hexadecimal digits;"
					+ " write a literal '%' as %25.");
			return;
		}
		if (request.getContentLengthLong() < 0 && request.getHeader("Transfer-Encoding") != null) {
			request = new BoundedBodyRequest(request, maxBody);
		}
		if (hapiDecodesTheFormBody(request)) {
			byte[] body;
			try {
				body = request.getInputStream().readAllBytes();
			} catch (IOException e) {
				refuse(response, 413, "The request body is larger than the " + maxBody + " bytes this server accepts.");
				return;
			}
			if (!wellEscaped(new String(body, StandardCharsets.ISO_8859_1))) {
				refuse(response, 400, "The form body has a '%' that is not followed by two hexadecimal digits;"
						+ " write a literal '%' as %25.");
				return;
			}
			request = new ReplayedBodyRequest(request, body);
		}
		chain.doFilter(request, response);
	}

	/**
	 * HAPI's RestfulServer reads and URL-decodes the body itself for exactly these requests: a POST with
	 * a query string whose Content-Type starts with (case-sensitive) application/x-www-form-urlencoded.
	 */
	private static boolean hapiDecodesTheFormBody(HttpServletRequest request) {
		String contentType = request.getContentType();
		String query = request.getQueryString();
		return "POST".equals(request.getMethod()) && query != null && !query.isBlank() && contentType != null
				&& contentType.startsWith("application/x-www-form-urlencoded");
	}

	static boolean wellEscaped(String query) {
		for (int i = 0; i < query.length(); i++) {
			if (query.charAt(i) == '%') {
				if (i + 2 >= query.length() || !isHex(query.charAt(i + 1)) || !isHex(query.charAt(i + 2))) {
					return false;
				}
				i += 2;
			}
		}
		return true;
	}

	private static boolean isHex(char c) {
		return Character.digit(c, 16) >= 0;
	}

	private static void refuse(HttpServletResponse response, int status, String diagnostics) throws IOException {
		byte[] body = OperationOutcomes.json(OperationOutcomes.codeFor(status), diagnostics);
		response.setStatus(status);
		response.setContentType(OperationOutcomes.CONTENT_TYPE);
		response.setContentLength(body.length);
		response.getOutputStream().write(body);
	}

	/** A request whose body stream fails once more than {@code max} bytes have been read. */
	static final class BoundedBodyRequest extends HttpServletRequestWrapper {
		private final long max;
		private ServletInputStream stream;

		BoundedBodyRequest(HttpServletRequest request, long max) {
			super(request);
			this.max = max;
		}

		@Override
		public ServletInputStream getInputStream() throws IOException {
			if (stream == null) {
				stream = new Bounded(super.getInputStream(), max);
			}
			return stream;
		}
	}

	/** A request whose body, already read (and checked), is read again from memory. */
	static final class ReplayedBodyRequest extends HttpServletRequestWrapper {
		private final byte[] body;

		ReplayedBodyRequest(HttpServletRequest request, byte[] body) {
			super(request);
			this.body = body;
		}

		@Override
		public ServletInputStream getInputStream() {
			ByteArrayInputStream in = new ByteArrayInputStream(body);
			return new ServletInputStream() {
				@Override
				public int read() {
					return in.read();
				}

				@Override
				public int read(byte[] buffer, int offset, int length) {
					return in.read(buffer, offset, length);
				}

				@Override
				public boolean isFinished() {
					return in.available() == 0;
				}

				@Override
				public boolean isReady() {
					return true;
				}

				@Override
				public void setReadListener(ReadListener listener) {
					throw new UnsupportedOperationException("the body is already in memory");
				}
			};
		}
	}

	private static final class Bounded extends ServletInputStream {
		private final ServletInputStream in;
		private final long max;
		private long read;

		Bounded(ServletInputStream in, long max) {
			this.in = in;
			this.max = max;
		}

		@Override
		public int read() throws IOException {
			int b = in.read();
			if (b >= 0) {
				count(1);
			}
			return b;
		}

		@Override
		public int read(byte[] buffer, int offset, int length) throws IOException {
			int n = in.read(buffer, offset, length);
			if (n > 0) {
				count(n);
			}
			return n;
		}

		private void count(int n) throws IOException {
			read += n;
			if (read > max) {
				throw new IOException("the request body is larger than the " + max + " bytes this server accepts");
			}
		}

		@Override
		public boolean isFinished() {
			return in.isFinished();
		}

		@Override
		public boolean isReady() {
			return in.isReady();
		}

		@Override
		public void setReadListener(ReadListener listener) {
			in.setReadListener(listener);
		}
	}
}
