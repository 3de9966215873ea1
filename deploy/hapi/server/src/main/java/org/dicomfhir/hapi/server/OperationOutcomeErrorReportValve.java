package org.dicomfhir.hapi.server;

import jakarta.servlet.RequestDispatcher;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import org.apache.catalina.connector.Request;
import org.apache.catalina.connector.Response;
import org.apache.catalina.valves.ErrorReportValve;

/**
 * Tomcat's error page as an OperationOutcome instead of HTML: for the errors Tomcat answers before
 * any servlet or filter runs (a request line or header section over
 * {@code server.max-http-request-header-size}, more headers than the connector's maxHeaderCount,
 * characters not allowed in a URI, malformed HTTP), and for any other error response that reaches
 * the host with no body.
 *
 * <p>Tomcat answers all of its parse errors with 400. Where the cause says more, the status does:
 * "Request header is too large" before the request line was complete is 414 (URI Too Long), after
 * it 431 (Request Header Fields Too Large), as is "more than the maximum allowed number of headers".
 * Tomcat's own message is not echoed (it may quote the request).
 */
public class OperationOutcomeErrorReportValve extends ErrorReportValve {

	private static final String TOO_LARGE = "Request header is too large";
	private static final String TOO_MANY = "maximum allowed number of headers";

	@Override
	protected void report(Request request, Response response, Throwable throwable) {
		int status = response.getStatus();
		if (status < 400 || response.getContentWritten() > 0 || !response.setErrorReported()) {
			return;
		}
		Throwable cause = throwable != null ? throwable
				: (Throwable) request.getAttribute(RequestDispatcher.ERROR_EXCEPTION);
		String message = cause == null || cause.getMessage() == null ? "" : cause.getMessage();
		String diagnostics;
		if (status == 400 && message.contains(TOO_LARGE)) {
			boolean requestLineParsed = !request.getCoyoteRequest().requestURI().isNull();
			status = requestLineParsed ? 431 : 414;
			diagnostics = requestLineParsed
					? "The request's header fields are larger than this server accepts"
					: "The request URI is longer than this server accepts";
		} else if (status == 400 && message.contains(TOO_MANY)) {
			status = 431;
			diagnostics = "The request has more header fields than this server accepts";
		} else if (status == 400) {
			diagnostics = "The request is not valid HTTP, or its URI has characters that must be percent-encoded";
		} else {
			diagnostics = "HTTP " + status;
		}
		byte[] body = OperationOutcomes.json(OperationOutcomes.codeFor(status), diagnostics);
		try {
			response.setStatus(status);
			response.setContentType(OperationOutcomes.CONTENT_TYPE);
			Writer writer = response.getReporter();
			if (writer != null) {
				writer.write(new String(body, StandardCharsets.UTF_8));
				response.finishResponse();
			}
		} catch (IOException | IllegalStateException e) {
			// the client is gone or the response cannot take a body: nothing more to say
		}
	}
}
