package org.dicomfhir.hapi.auth;

import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRule;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleBuilderRuleConditional;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleBuilderRuleOp;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleBuilderRuleOpClassifier;
import ca.uhn.fhir.rest.server.interceptor.auth.RuleBuilder;
import java.util.List;
import java.util.function.Function;
import org.dicomfhir.hapi.auth.SmartScope.Context;
import org.dicomfhir.hapi.auth.SmartScope.Permission;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.Patient;

/**
 * SMART scopes as HAPI authorization rules (SMART App Launch 2.x, "Scopes and Launch Context").
 *
 * <ul>
 *   <li>{@code patient/T.rs} (v1 {@code .read}): read and search T in the Patient compartment of the
 *       token's {@code patient} claim; without that claim a patient scope grants nothing.
 *   <li>{@code user/T.rs}, {@code system/T.rs}: read and search every T. (Which records a user may see
 *       is the authorization server's call when it grants {@code user/} scopes; this server keeps no
 *       per-user access lists.)
 *   <li>{@code c}, {@code u}, {@code d}: create, update, delete of T (conditional forms too for user and
 *       system scopes: HAPI's conditional rules know no compartment), in the
 *       compartment for patient scopes; any of them also allows transaction/batch Bundles, whose
 *       entries HAPI then checks one by one.
 *   <li>{@code system/*.cruds} (v1 {@code system/*.*}): every permission on every type, i.e.
 *       everything (the sidecar's backfill writes ImagingStudy, Endpoint, AuditEvent, Subscription,
 *       OperationDefinition and Patient).
 *   <li>{@code Endpoint}: readable with any valid token. An Endpoint holds a PACS's WADO-RS root, no
 *       patient data, and a client that may read an ImagingStudy needs its {@code Endpoint.address}.
 *   <li>{@code $fetch-imaging}: allowed to whoever may read ImagingStudy: on the Patient in context
 *       and at type level (identifier lookup) for a patient scope, on any Patient for user/system. At
 *       type level HAPI cannot know the Patient yet; the provider sends the caller's token to the
 *       sidecar, which reads the resolved Patient with it, so a lookup never reaches another patient.
 *   <li>{@code metadata} for everyone; everything else is denied.
 * </ul>
 */
public final class SmartRules {

	public static final String FETCH_IMAGING = "$fetch-imaging";

	private SmartRules() {}

	/** Rules for a request without a (valid) token: the CapabilityStatement only. */
	public static List<IAuthRule> anonymous() {
		return new RuleBuilder().allow("metadata").metadata().andThen().denyAll("no token").build();
	}

	public static List<IAuthRule> forToken(SmartToken token) {
		RuleBuilder rules = new RuleBuilder();
		rules.allow("metadata").metadata();
		rules.allow("Endpoint: no patient data").read().resourcesOfType("Endpoint").withAnyId();
		boolean everything = token.scopes().stream()
				.anyMatch(s -> s.context() == Context.SYSTEM && s.allTypes() && s.permissions().size() == Permission.values().length);
		if (everything) {
			return rules.allowAll("system/*.cruds").build();
		}
		boolean anyWrite = false;
		boolean fetchAnywhere = false;
		boolean fetchInContext = false;
		for (SmartScope scope : token.scopes()) {
			String label = scopeLabel(scope);
			if (scope.context() == Context.PATIENT) {
				if (token.patient() == null) {
					continue; // SMART: a patient scope without patient context grants nothing
				}
				IdType patient = new IdType("Patient", token.patient());
				addPermissions(rules, scope, label, target -> target.inCompartment("Patient", patient), false);
				fetchInContext |= scope.reads() && scope.covers("ImagingStudy");
			} else {
				addPermissions(rules, scope, label, IAuthRuleBuilderRuleOpClassifier::withAnyId, true);
				fetchAnywhere |= scope.reads() && scope.covers("ImagingStudy");
			}
			anyWrite |= scope.writes();
		}
		if (fetchAnywhere) {
			rules.allow("$fetch-imaging: any Patient").operation().named(FETCH_IMAGING).onInstancesOfType(Patient.class).andAllowAllResponses();
		} else if (fetchInContext) {
			rules.allow("$fetch-imaging: the patient in context")
					.operation().named(FETCH_IMAGING).onInstance(new IdType("Patient", token.patient())).andAllowAllResponses();
		}
		if (fetchAnywhere || fetchInContext) {
			rules.allow("$fetch-imaging: identifier lookup, checked by the sidecar with the caller's token")
					.operation().named(FETCH_IMAGING).onType(Patient.class).andAllowAllResponses();
		}
		if (anyWrite) {
			rules.allow("transaction: each entry by the rules above").transaction().withAnyOperation().andApplyNormalRules();
		}
		return rules.denyAll("not granted by the token's scopes").build();
	}

	private static void addPermissions(
			RuleBuilder rules,
			SmartScope scope,
			String label,
			Function<IAuthRuleBuilderRuleOpClassifier, ?> where,
			boolean conditionals) {
		// HAPI's conditional rules know no compartment: patient scopes write by id only
		if (scope.reads()) {
			where.apply(types(rules.allow(label).read(), scope));
		}
		if (scope.allows(Permission.CREATE)) {
			where.apply(types(rules.allow(label).create(), scope));
			if (conditionals) {
				conditional(rules.allow(label).createConditional(), scope);
			}
		}
		if (scope.allows(Permission.UPDATE)) {
			where.apply(types(rules.allow(label).write(), scope));
			if (conditionals) {
				conditional(rules.allow(label).updateConditional(), scope);
			}
		}
		if (scope.allows(Permission.DELETE)) {
			where.apply(types(rules.allow(label).delete(), scope));
			if (conditionals) {
				conditional(rules.allow(label).deleteConditional(), scope);
			}
		}
	}

	private static IAuthRuleBuilderRuleOpClassifier types(
			IAuthRuleBuilderRuleOp op, SmartScope scope) {
		return scope.allTypes() ? op.allResources() : op.resourcesOfType(scope.resourceType());
	}

	private static void conditional(
			IAuthRuleBuilderRuleConditional op, SmartScope scope) {
		if (scope.allTypes()) {
			op.allResources().andThen();
		} else {
			op.resourcesOfType(scope.resourceType()).andThen();
		}
	}

	private static String scopeLabel(SmartScope scope) {
		return scope.context().name().toLowerCase() + "/" + scope.resourceType() + " " + scope.permissions();
	}
}
