package org.dicomfhir.hapi.auth;

import java.util.Collections;
import java.util.EnumSet;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One SMART resource scope: {@code context/resourceType.permissions}.
 *
 * <p>SMART App Launch 2.x, "Scopes and Launch Context" (scopes-and-launch-context.html): v2
 * permissions are a subset of {@code cruds} in that order ({@code patient/*.rs}); the v1 forms
 * {@code .read} (= {@code rs}), {@code .write} (= {@code cud}) and {@code .*} (= {@code cruds}) are
 * still accepted ("Scope Equivalence"). Query-string constraints ({@code patient/Observation.rs?category=...})
 * are not supported and such a scope grants nothing here (denying is the safe reading). Every other
 * scope ({@code openid}, {@code fhirUser}, {@code launch/patient}, ...) is not a resource scope.
 *
 * @param context      whose records: the patient in context, whatever the user may see, or the system
 * @param resourceType a FHIR resource type or {@code *}
 * @param permissions  what may be done
 */
public record SmartScope(Context context, String resourceType, Set<Permission> permissions) {

	public enum Context {
		PATIENT,
		USER,
		SYSTEM
	}

	/** SMART v2 permissions, in their canonical order. */
	public enum Permission {
		CREATE('c'),
		READ('r'),
		UPDATE('u'),
		DELETE('d'),
		SEARCH('s');

		final char letter;

		Permission(char letter) {
			this.letter = letter;
		}
	}

	public static final String ALL_TYPES = "*";

	private static final Pattern SHAPE = Pattern.compile("(patient|user|system)/(\\*|[A-Z][A-Za-z]{1,63})\\.([a-z*]+)");

	public SmartScope {
		permissions = Collections.unmodifiableSet(EnumSet.copyOf(permissions));
	}

	/** The scope if {@code text} is a resource scope this server understands, else empty. */
	public static Optional<SmartScope> parse(String text) {
		Matcher m = SHAPE.matcher(text);
		if (!m.matches()) {
			return Optional.empty();
		}
		Set<Permission> permissions = permissionsOf(m.group(3));
		if (permissions.isEmpty()) {
			return Optional.empty();
		}
		Context context = Context.valueOf(m.group(1).toUpperCase(Locale.ROOT));
		return Optional.of(new SmartScope(context, m.group(2), permissions));
	}

	private static Set<Permission> permissionsOf(String text) {
		switch (text) {
			case "read":
				return EnumSet.of(Permission.READ, Permission.SEARCH);
			case "write":
				return EnumSet.of(Permission.CREATE, Permission.UPDATE, Permission.DELETE);
			case "*":
				return EnumSet.allOf(Permission.class);
			default:
				break;
		}
		// v2: letters of "cruds", each at most once, in that order
		EnumSet<Permission> result = EnumSet.noneOf(Permission.class);
		int next = 0;
		Permission[] all = Permission.values();
		for (char c : text.toCharArray()) {
			while (next < all.length && all[next].letter != c) {
				next++;
			}
			if (next == all.length) {
				return EnumSet.noneOf(Permission.class);
			}
			result.add(all[next++]);
		}
		return result;
	}

	public boolean allows(Permission permission) {
		return permissions.contains(permission);
	}

	/** Read or search: HAPI's read rules cover read, vread, search and history alike. */
	public boolean reads() {
		return allows(Permission.READ) || allows(Permission.SEARCH);
	}

	public boolean writes() {
		return allows(Permission.CREATE) || allows(Permission.UPDATE) || allows(Permission.DELETE);
	}

	public boolean covers(String type) {
		return ALL_TYPES.equals(resourceType) || resourceType.equals(type);
	}

	public boolean allTypes() {
		return ALL_TYPES.equals(resourceType);
	}
}
