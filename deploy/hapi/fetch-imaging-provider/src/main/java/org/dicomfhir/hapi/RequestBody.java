package org.dicomfhir.hapi;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import jakarta.servlet.http.HttpServletRequest;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * The body to relay and its Content-Type: the caller's bytes, or a form body rebuilt from the
 * parameter map when the servlet container consumed it ({@link FormBody}). At most
 * {@code maxBytes} are read: a larger body is refused with 413 before the sidecar is asked.
 */
record RequestBody(byte[] bytes, String contentType) {

	/** The request cannot be relayed as it is; {@link #reply()} is what the caller gets instead. */
	static final class Refused extends Exception {
		private final transient SidecarForwarder.Reply reply;

		Refused(int status, String code, String diagnostics) {
			super(diagnostics, null, false, false);
			this.reply = new SidecarForwarder.Reply(
					status, SidecarForwarder.FHIR_JSON, SidecarForwarder.operationOutcome(code, diagnostics), null);
		}

		SidecarForwarder.Reply reply() {
			return reply;
		}
	}

	static RequestBody of(RequestDetails details, HttpServletRequest request, long maxBytes) throws Refused {
		String contentType = request.getContentType();
		if ("GET".equalsIgnoreCase(request.getMethod())) {
			return new RequestBody(new byte[0], contentType); // a GET's body is not relayed
		}
		if (request.getContentLengthLong() > maxBytes) {
			throw tooLarge(maxBytes);
		}
		byte[] raw = read(details, request, maxBytes);
		if (raw.length > 0 || !FormBody.isForm(contentType)) {
			return new RequestBody(raw, contentType);
		}
		// a form POST whose body is empty here: the container may have read it into its parameters
		if (request.getAttribute(FormBody.PARSE_FAILED_ATTRIBUTE) != null) {
			throw new Refused(400, "invalid",
					"The query string or form body could not be parsed (a malformed %-escape, or too many parameters)");
		}
		byte[] rebuilt = FormBody.rebuild(request.getParameterMap(), request.getQueryString())
				.getBytes(StandardCharsets.UTF_8);
		if (rebuilt.length == 0) {
			return new RequestBody(raw, contentType);
		}
		if (rebuilt.length > maxBytes) {
			throw tooLarge(maxBytes);
		}
		return new RequestBody(rebuilt, FormBody.CONTENT_TYPE);
	}

	/**
	 * With a Content-Length (checked above) HAPI's cached, decoded reader is bounded by it. Without
	 * one (chunked), at most maxBytes + 1 are read from the stream; if HAPI has read the stream
	 * already (a form POST with a query string), its cached copy is taken.
	 */
	private static byte[] read(RequestDetails details, HttpServletRequest request, long maxBytes) throws Refused {
		byte[] bytes;
		if (request.getContentLengthLong() >= 0 || request.getHeader("Content-Encoding") != null) {
			bytes = details.loadRequestContents();
		} else {
			try {
				InputStream in = request.getInputStream();
				bytes = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, maxBytes + 1));
			} catch (IOException e) {
				throw new Refused(400, "invalid", "The request body could not be read");
			}
			if (bytes.length == 0) {
				bytes = details.loadRequestContents();
			}
		}
		bytes = bytes == null ? new byte[0] : bytes;
		if (bytes.length > maxBytes) {
			throw tooLarge(maxBytes);
		}
		return bytes;
	}

	private static Refused tooLarge(long maxBytes) {
		return new Refused(413, "too-long",
				"The request body is larger than the " + maxBytes + " bytes $fetch-imaging accepts");
	}
}
