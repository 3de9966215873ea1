package org.dicomfhir.hapi.auth;

import ca.uhn.fhir.rest.api.RequestTypeEnum;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.AuthenticationException;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import ca.uhn.fhir.rest.server.exceptions.UnclassifiedServerFailureException;
import java.util.Locale;
import org.hl7.fhir.r4.model.OperationOutcome;
import org.hl7.fhir.r4.model.OperationOutcome.IssueSeverity;
import org.hl7.fhir.r4.model.OperationOutcome.IssueType;
import java.util.Optional;

/**
 * The token of a request, checked once and kept in the request's user data for the authorization
 * and search narrowing interceptors, which run later and in any order.
 *
 * <p>One instance per JVM ({@link #shared()}): HAPI creates each interceptor class named in
 * {@code hapi.fhir.custom-interceptor-classes} with its no-arg constructor, and they must share one
 * key cache and one configuration.
 */
public final class SmartAuth {

	static final String TOKEN_KEY = SmartAuth.class.getName() + ".token";
	/** RFC 6750 section 3: the challenge a resource server answers with. */
	public static final String WWW_AUTHENTICATE = "WWW-Authenticate";

	private static volatile SmartAuth shared;

	private final SmartAuthSettings settings;
	private final TokenValidator validator;

	public SmartAuth(SmartAuthSettings settings, TokenValidator validator) {
		this.settings = settings;
		this.validator = validator;
	}

	/** The JVM's instance, configured from system properties and environment on first use. */
	public static SmartAuth shared() {
		SmartAuth current = shared;
		if (current == null) {
			synchronized (SmartAuth.class) {
				if (shared == null) {
					SmartAuthSettings settings = SmartAuthSettings.fromEnvironment();
					shared = new SmartAuth(settings, settings.enabled() ? new TokenValidator(settings) : null);
				}
				current = shared;
			}
		}
		return current;
	}

	/** For tests: the instance every interceptor of this JVM uses from now on. */
	public static void setShared(SmartAuth instance) {
		shared = instance;
	}

	public SmartAuthSettings settings() {
		return settings;
	}

	public boolean enabled() {
		return settings.enabled();
	}

	/**
	 * Requests anyone may make: the CapabilityStatement ({@code GET [base]/metadata}, {@code OPTIONS
	 * [base]}) says how to get a token (FHIR R4 http.html "capabilities"; SMART App Launch 2.x asks
	 * servers to serve it without authorization). smart-configuration is served before HAPI sees the request.
	 */
	public static boolean isPublic(RequestDetails request) {
		String path = Optional.ofNullable(request.getRequestPath()).orElse("");
		if (path.startsWith("/")) {
			path = path.substring(1);
		}
		return "metadata".equals(path) || (request.getRequestType() == RequestTypeEnum.OPTIONS && path.isEmpty());
	}

	/**
	 * The caller's token, validated; null for a public request without one. Throws 401 (RFC 6750
	 * section 3.1: {@code invalid_request} / {@code invalid_token}, or no error code when there is no
	 * token at all) or 503 when the issuer's keys cannot be read.
	 */
	public SmartToken authenticate(RequestDetails request) {
		if (!enabled()) {
			return null;
		}
		Object known = request.getUserData().get(TOKEN_KEY);
		if (known instanceof SmartToken token) {
			return token;
		}
		String header = request.getHeader("Authorization");
		if (header == null || header.isBlank()) {
			if (isPublic(request)) {
				return null;
			}
			throw unauthorized("This FHIR server requires a bearer access token (SMART App Launch / Backend Services)", null);
		}
		String[] parts = header.trim().split("\\s+", 2);
		if (parts.length != 2 || !"bearer".equals(parts[0].toLowerCase(Locale.ROOT))) {
			throw unauthorized("The Authorization header must be 'Bearer <access token>'", "invalid_request");
		}
		SmartToken token;
		try {
			token = validator.validate(parts[1].trim());
		} catch (TokenValidator.InvalidToken e) {
			if (e.keysUnavailable()) {
				UnclassifiedServerFailureException unavailable = new UnclassifiedServerFailureException(503, e.getMessage());
				unavailable.addResponseHeader("Retry-After", "10");
				throw unavailable;
			}
			throw unauthorized(e.getMessage(), "invalid_token");
		}
		request.getUserData().put(TOKEN_KEY, token);
		return token;
	}

	/** The token {@link #authenticate} accepted for this request, if any. */
	public static SmartToken tokenOf(RequestDetails request) {
		Object known = request.getUserData().get(TOKEN_KEY);
		return known instanceof SmartToken token ? token : null;
	}

	AuthenticationException unauthorized(String message, String error) {
		AuthenticationException e = new AuthenticationException(message);
		// FHIR R4 issue-type "login": the client needs to (re)authenticate (HAPI would say "processing")
		OperationOutcome outcome = new OperationOutcome();
		outcome.addIssue().setSeverity(IssueSeverity.ERROR).setCode(IssueType.LOGIN).setDiagnostics(message);
		e.setOperationOutcome(outcome);
		e.addResponseHeader(WWW_AUTHENTICATE, challenge(error, error == null ? null : message));
		return e;
	}

	/** {@code Bearer realm="<FHIR base>"[, error="...", error_description="..."]} (RFC 6750 section 3). */
	String challenge(String error, String description) {
		StringBuilder value = new StringBuilder("Bearer realm=\"").append(quoted(settings.audience())).append('"');
		if (error != null) {
			value.append(", error=\"").append(error).append('"');
		}
		if (description != null) {
			value.append(", error_description=\"").append(quoted(description)).append('"');
		}
		return value.toString();
	}

	/** Adds the {@code insufficient_scope} challenge to HAPI's 403 (RFC 6750 section 3.1). */
	void challengeInsufficientScope(BaseServerResponseException forbidden) {
		if (enabled() && !forbidden.getResponseHeaders().containsKey(WWW_AUTHENTICATE)) {
			forbidden.addResponseHeader(WWW_AUTHENTICATE, challenge("insufficient_scope", "The token's scopes do not allow this request"));
		}
	}

	/** RFC 6750 error_description: printable ASCII without '"' and '\'. */
	private static String quoted(String text) {
		return text == null ? "" : text.replaceAll("[^\\x20-\\x7E]|[\"\\\\]", "'");
	}
}
