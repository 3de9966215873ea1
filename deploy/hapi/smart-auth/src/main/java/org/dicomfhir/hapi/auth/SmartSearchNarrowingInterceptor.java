package org.dicomfhir.hapi.auth;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.interceptor.auth.AuthorizedList;
import ca.uhn.fhir.rest.server.interceptor.auth.SearchNarrowingInterceptor;
import org.dicomfhir.hapi.auth.SmartScope.Context;

/**
 * Narrows a patient token's searches to its Patient compartment ({@code ImagingStudy?} becomes
 * {@code ImagingStudy?patient=Patient/123}), so a search answers with the patient's own records
 * instead of failing as a whole when the AuthorizationInterceptor meets another patient's resource.
 *
 * <p>Only tokens whose reading is limited to the patient in context are narrowed: a token that may
 * also read as a user or system is not. Endpoint searches are never narrowed (Endpoints are in no
 * compartment and readable with any token, see {@link SmartRules}).
 */
public class SmartSearchNarrowingInterceptor extends SearchNarrowingInterceptor {

	private final SmartAuth auth;

	public SmartSearchNarrowingInterceptor() {
		this(SmartAuth.shared());
	}

	public SmartSearchNarrowingInterceptor(SmartAuth auth) {
		this.auth = auth;
	}

	@Override
	protected AuthorizedList buildAuthorizedList(RequestDetails request) {
		if (!auth.enabled() || "Endpoint".equals(request.getResourceName())) {
			return null;
		}
		SmartToken token = auth.authenticate(request);
		if (token == null || token.patient() == null) {
			return null;
		}
		boolean readsBeyondPatient = token.scopes().stream()
				.anyMatch(s -> s.context() != Context.PATIENT && s.reads());
		boolean readsInPatient = token.scopes().stream()
				.anyMatch(s -> s.context() == Context.PATIENT && s.reads());
		if (readsBeyondPatient || !readsInPatient) {
			return null;
		}
		return new AuthorizedList().addCompartment("Patient/" + token.patient());
	}
}
