package org.dicomfhir.hapi.auth;

import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * What a validated access token says about its bearer, as far as the rules need it.
 *
 * @param subject  {@code sub}
 * @param clientId {@code azp} (Keycloak) or {@code client_id}
 * @param scopes   the SMART resource scopes granted ({@code scope}); other scopes are dropped
 * @param patient  the patient in context ({@code patient} claim, SMART App Launch "launch context"), a
 *                 bare FHIR id, or null. A {@code patient/} scope grants nothing without it.
 * @param fhirUser {@code fhirUser} ({@code Practitioner/123}), or null
 */
public record SmartToken(String subject, String clientId, List<SmartScope> scopes, String patient, String fhirUser) {

	/** FHIR R4 id datatype: what a patient claim must look like to become a compartment. */
	private static final Pattern FHIR_ID = Pattern.compile("[A-Za-z0-9\\-.]{1,64}");

	public SmartToken {
		scopes = List.copyOf(scopes);
		if (patient != null && !FHIR_ID.matcher(patient).matches()) {
			patient = null; // not an id: no patient context rather than a compartment nobody meant
		}
	}

	/** Scopes from the space-separated {@code scope} claim (RFC 8693 section 4.2, RFC 9068 section 2.2.3). */
	public static List<SmartScope> scopesOf(String scopeClaim) {
		if (scopeClaim == null || scopeClaim.isBlank()) {
			return List.of();
		}
		return java.util.Arrays.stream(scopeClaim.trim().split("\\s+"))
				.map(SmartScope::parse)
				.flatMap(Optional::stream)
				.toList();
	}

	public Optional<String> patientInContext() {
		return Optional.ofNullable(patient);
	}
}
