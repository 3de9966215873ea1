package org.dicomfhir.hapi.auth;

import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import ca.uhn.fhir.rest.server.exceptions.ForbiddenOperationException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import org.hl7.fhir.instance.model.api.IBaseConformance;

/**
 * The public face of SMART on FHIR on this server, and the token check of every other request.
 *
 * <ul>
 *   <li>{@code GET [base]/.well-known/smart-configuration}: served here, without a token
 *       ({@link SmartConfiguration}).
 *   <li>{@code [base]/metadata}: public; its CapabilityStatement gets {@code rest.security}
 *       ({@link SmartCapabilityStatement}).
 *   <li>Every other request: a valid bearer token or 401 with {@code WWW-Authenticate: Bearer ...}
 *       and an OperationOutcome (RFC 6750 section 3). The check runs before HAPI picks a handler,
 *       so even a path HAPI does not know is a 401 without a token, not a 404.
 * </ul>
 * Does nothing when no issuer is configured ({@link SmartAuthSettings#enabled()}).
 */
@Interceptor
public class SmartAuthenticationInterceptor {

	public static final String SMART_CONFIGURATION_PATH = "/.well-known/smart-configuration";

	private final SmartAuth auth;

	public SmartAuthenticationInterceptor() {
		this(SmartAuth.shared());
	}

	public SmartAuthenticationInterceptor(SmartAuth auth) {
		this.auth = auth;
	}

	/** After CORS (order 0), so a browser app reading smart-configuration gets its CORS headers. */
	@Hook(value = Pointcut.SERVER_INCOMING_REQUEST_PRE_PROCESSED, order = 100)
	public boolean serveSmartConfiguration(HttpServletRequest request, HttpServletResponse response) throws IOException {
		if (!auth.enabled() || !SMART_CONFIGURATION_PATH.equals(request.getPathInfo())) {
			return true;
		}
		if (!"GET".equals(request.getMethod()) && !"HEAD".equals(request.getMethod())) {
			response.setStatus(405);
			response.setHeader("Allow", "GET, HEAD");
			return false;
		}
		byte[] body = SmartConfiguration.json(auth.settings());
		response.setStatus(200);
		response.setContentType("application/json;charset=UTF-8");
		response.setContentLength(body.length);
		if ("GET".equals(request.getMethod())) {
			response.getOutputStream().write(body);
		}
		return false;
	}

	@Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_HANDLER_SELECTED)
	public void authenticate(RequestDetails request) {
		auth.authenticate(request);
	}

	/**
	 * Every 403 of HAPI's authorization (the AuthorizationInterceptor's and the search narrowing's
	 * "Value not permitted") carries the {@code insufficient_scope} challenge, so a client can tell
	 * it from other refusals.
	 */
	@Hook(Pointcut.SERVER_PRE_PROCESS_OUTGOING_EXCEPTION)
	public BaseServerResponseException challengeForbidden(Throwable exception) {
		if (exception instanceof ForbiddenOperationException forbidden) {
			auth.challengeInsufficientScope(forbidden);
		}
		return null; // the same exception, now with the header
	}

	@Hook(Pointcut.SERVER_CAPABILITY_STATEMENT_GENERATED)
	public void describeSecurity(IBaseConformance capabilityStatement) {
		if (auth.enabled()) {
			SmartCapabilityStatement.addSecurity(capabilityStatement, auth.settings());
		}
	}
}
