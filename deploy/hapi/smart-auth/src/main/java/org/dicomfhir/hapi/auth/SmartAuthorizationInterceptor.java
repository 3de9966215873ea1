package org.dicomfhir.hapi.auth;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.ForbiddenOperationException;
import ca.uhn.fhir.rest.server.interceptor.auth.AuthorizationInterceptor;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRule;
import ca.uhn.fhir.rest.server.interceptor.auth.PolicyEnum;
import ca.uhn.fhir.rest.server.interceptor.auth.RuleBuilder;
import java.util.List;

/**
 * HAPI's own AuthorizationInterceptor with rules built from the request's SMART token
 * ({@link SmartRules}); a denied request is HAPI's 403 OperationOutcome plus the
 * {@code insufficient_scope} challenge of RFC 6750 section 3.1. Without a configured issuer every
 * request is allowed, as before this jar.
 */
public class SmartAuthorizationInterceptor extends AuthorizationInterceptor {

	private final SmartAuth auth;

	public SmartAuthorizationInterceptor() {
		this(SmartAuth.shared());
	}

	public SmartAuthorizationInterceptor(SmartAuth auth) {
		super(PolicyEnum.DENY);
		this.auth = auth;
	}

	@Override
	public List<IAuthRule> buildRuleList(RequestDetails request) {
		if (!auth.enabled()) {
			return new RuleBuilder().allowAll("no issuer configured: tokens are not enforced").build();
		}
		// normally done already (SmartAuthenticationInterceptor); idempotent, and it never lets an
		// unauthenticated request through should the hooks run in another order
		SmartToken token = auth.authenticate(request);
		return token == null ? SmartRules.anonymous() : SmartRules.forToken(token);
	}

	@Override
	protected void handleDeny(RequestDetails request, Verdict verdict) {
		try {
			super.handleDeny(request, verdict);
		} catch (ForbiddenOperationException forbidden) {
			auth.challengeInsufficientScope(forbidden);
			throw forbidden;
		}
	}
}
