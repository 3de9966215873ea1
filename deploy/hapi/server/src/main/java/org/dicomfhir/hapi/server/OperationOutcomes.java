package org.dicomfhir.hapi.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;

/**
 * The OperationOutcome every error of this server outside HAPI's own (Tomcat, Spring, our filter)
 * is answered with: {@code application/fhir+json}, one issue of severity error. Built with Jackson
 * so that no FhirContext is needed where Tomcat reports errors.
 */
final class OperationOutcomes {

	static final String CONTENT_TYPE = "application/fhir+json;charset=UTF-8";
	private static final ObjectMapper JSON = new ObjectMapper();

	private OperationOutcomes() {}

	static byte[] json(String code, String diagnostics) {
		ObjectNode outcome = JSON.createObjectNode().put("resourceType", "OperationOutcome");
		outcome.putArray("issue").addObject().put("severity", "error").put("code", code).put("diagnostics", diagnostics);
		return outcome.toString().getBytes(StandardCharsets.UTF_8);
	}

	/** The R4 IssueType that fits an HTTP error status. */
	static String codeFor(int status) {
		return switch (status) {
			case 400 -> "invalid";
			case 401 -> "login";
			case 403 -> "forbidden";
			case 404, 410 -> "not-found";
			case 405, 406, 415 -> "not-supported";
			case 409 -> "conflict";
			case 413, 414, 431 -> "too-long";
			case 429 -> "throttled";
			case 502, 503 -> "transient";
			case 504 -> "timeout";
			default -> status >= 500 ? "exception" : "processing";
		};
	}
}
