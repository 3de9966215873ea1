package org.dicomfhir.hapi.resthook;

import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.api.dao.IFhirResourceDao;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.server.exceptions.ResourceGoneException;
import ca.uhn.fhir.rest.server.exceptions.ResourceNotFoundException;
import ca.uhn.fhir.rest.server.exceptions.ResourceVersionConflictException;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.Subscription;
import org.hl7.fhir.r4.model.Subscription.SubscriptionStatus;

/**
 * Writes {@code Subscription.status = error} and {@code Subscription.error} (FHIR R4) through HAPI's
 * own DAO, as a client's PUT would: HAPI then unregisters the Subscription and stops matching
 * changes against it. Only a Subscription that is still active and still has the failing endpoint is
 * changed, and the update carries the version read, so a concurrent re-registration wins.
 */
final class SubscriptionErrorWriter implements RestHookGuard.StatusWriter {

	private final DaoRegistry daoRegistry;

	SubscriptionErrorWriter(DaoRegistry daoRegistry) {
		this.daoRegistry = daoRegistry;
	}

	@Override
	public RestHookGuard.Marked markError(String subscriptionId, String endpoint, String reason) {
		IFhirResourceDao<Subscription> dao = daoRegistry.getResourceDao(Subscription.class);
		SystemRequestDetails request = new SystemRequestDetails();
		Subscription stored;
		try {
			stored = dao.read(new IdType("Subscription", subscriptionId), request);
		} catch (ResourceNotFoundException | ResourceGoneException e) {
			return RestHookGuard.Marked.NOT_ACTIVE;
		}
		SubscriptionStatus status = stored.getStatus();
		if (status != SubscriptionStatus.ACTIVE && status != SubscriptionStatus.REQUESTED) {
			return RestHookGuard.Marked.NOT_ACTIVE;
		}
		if (!endpoint.equals(stored.getChannel().getEndpoint())) {
			return RestHookGuard.Marked.CHANGED;
		}
		stored.setStatus(SubscriptionStatus.ERROR);
		stored.setError(reason);
		try {
			// the id keeps the version read: HAPI refuses the update if someone wrote in between
			dao.update(stored, request);
		} catch (ResourceVersionConflictException e) {
			return RestHookGuard.Marked.CHANGED;
		}
		return RestHookGuard.Marked.ERROR;
	}
}
