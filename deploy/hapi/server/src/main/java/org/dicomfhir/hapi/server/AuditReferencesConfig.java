package org.dicomfhir.hapi.server;

import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.interceptor.OverridePathBasedReferentialIntegrityForDeletesInterceptor;
import java.util.List;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * An AuditEvent never keeps what it observed alive. HAPI refuses to delete a resource that
 * another one references (409), and an AuditEvent references the Patient whose imaging was
 * accessed (BALP: {@code entity.what}, what {@code AuditEvent?patient=} finds) and the user
 * ({@code agent.who}): without this, the first access to a patient's imaging would make that
 * Patient undeletable. Only these two paths of AuditEvent are exempt; every other reference
 * still blocks a delete, and the AuditEvent keeps the reference (to an id that no longer
 * resolves: the record that someone accessed it is what must stay).
 *
 * <p>Not {@code JpaStorageSettings.setEnforceReferentialIntegrityOnDeleteDisableForPaths}:
 * HAPI reads that setting in {@code $delete-expunge} only, a plain DELETE does not.
 */
@Configuration
public class AuditReferencesConfig {

	/** The AuditEvent paths whose references do not block a delete. */
	static final List<String> OBSERVED_PATHS = List.of("AuditEvent.entity.what", "AuditEvent.agent.who");

	@Bean
	public OverridePathBasedReferentialIntegrityForDeletesInterceptor auditReferencesDoNotBlockDeletes(
			IInterceptorService interceptors) {
		OverridePathBasedReferentialIntegrityForDeletesInterceptor interceptor =
				new OverridePathBasedReferentialIntegrityForDeletesInterceptor();
		OBSERVED_PATHS.forEach(interceptor::addPath);
		interceptors.registerInterceptor(interceptor); // storage pointcuts: every DELETE, REST or not
		return interceptor;
	}
}
