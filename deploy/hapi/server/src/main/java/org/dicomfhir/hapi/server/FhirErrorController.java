package org.dicomfhir.hapi.server;

import jakarta.servlet.RequestDispatcher;
import jakarta.servlet.http.HttpServletRequest;
import org.springframework.boot.web.servlet.error.ErrorController;
import org.springframework.http.HttpStatus;
import org.springframework.http.MediaType;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RestController;

/**
 * Every error Spring renders (its error page at {@code server.error.path}: paths outside /fhir,
 * exceptions thrown outside HAPI, a {@code sendError} of any servlet or filter) as a FHIR
 * OperationOutcome instead of Spring Boot's JSON or Whitelabel HTML. Replaces Boot's
 * BasicErrorController (which backs off when an ErrorController bean exists). The request path
 * and exception message are not echoed.
 */
@RestController
public class FhirErrorController implements ErrorController {

	@RequestMapping("${server.error.path:${error.path:/error}}")
	public ResponseEntity<byte[]> error(HttpServletRequest request) {
		Object code = request.getAttribute(RequestDispatcher.ERROR_STATUS_CODE);
		int status = code instanceof Integer value && value >= 400 ? value : 500;
		HttpStatus known = HttpStatus.resolve(status);
		String diagnostics = "HTTP " + status + (known == null ? "" : " " + known.getReasonPhrase())
				+ (status == 404 ? ": this server's FHIR base is /fhir" : "");
		return ResponseEntity.status(status)
				.contentType(MediaType.parseMediaType(OperationOutcomes.CONTENT_TYPE))
				.body(OperationOutcomes.json(OperationOutcomes.codeFor(status), diagnostics));
	}
}
