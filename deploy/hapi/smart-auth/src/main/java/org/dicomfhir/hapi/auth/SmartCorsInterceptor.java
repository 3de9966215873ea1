package org.dicomfhir.hapi.auth;

import ca.uhn.fhir.rest.server.interceptor.CorsInterceptor;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.time.Duration;
import java.util.List;
import org.springframework.web.cors.CorsConfiguration;

/**
 * CORS for browser apps (the sidecar's viewer pages) calling this FHIR server with a bearer token:
 * HAPI's CorsInterceptor, allowed origins from {@code smart-auth.cors-origins} /
 * {@code SMART_AUTH_CORS_ORIGINS} (comma-separated, e.g. {@code http://127.0.0.1:8090}). No origins,
 * no CORS headers. Preflights are answered before the token check (a browser sends none with them).
 * No cookies are involved (the token travels in {@code Authorization}), so credentials stay off.
 */
public class SmartCorsInterceptor extends CorsInterceptor {

	public SmartCorsInterceptor() {
		this(SmartAuth.shared().settings().corsOrigins());
	}

	private final boolean active;

	public SmartCorsInterceptor(List<String> origins) {
		super(configuration(origins));
		this.active = !origins.isEmpty();
	}

	/** Without origins, stay out of the way: Spring's processor would refuse every request with an Origin. */
	@Override
	public boolean incomingRequestPreProcessed(HttpServletRequest request, HttpServletResponse response) {
		return !active || super.incomingRequestPreProcessed(request, response);
	}

	static CorsConfiguration configuration(List<String> origins) {
		CorsConfiguration config = new CorsConfiguration();
		origins.forEach(config::addAllowedOrigin);
		config.setAllowedMethods(List.of("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"));
		config.setAllowedHeaders(List.of(
				"Authorization", "Content-Type", "Accept", "Cache-Control", "Prefer", "If-Match", "If-None-Exist",
				"If-None-Match", "X-Request-Id"));
		config.setExposedHeaders(List.of("Location", "Content-Location", "ETag", "Last-Modified", "WWW-Authenticate", "Retry-After"));
		config.setAllowCredentials(false);
		config.setMaxAge(Duration.ofMinutes(10));
		return config;
	}
}
