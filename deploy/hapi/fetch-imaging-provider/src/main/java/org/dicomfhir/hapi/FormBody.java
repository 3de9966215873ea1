package org.dicomfhir.hapi;

import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.StringJoiner;

/**
 * An {@code application/x-www-form-urlencoded} body that the servlet container has already
 * consumed, rebuilt from the request's parameter map.
 *
 * <p>When a form POST has no query string, HAPI's RestfulServer asks the servlet for its parameter
 * map (Tomcat then reads the form body to fill it), so the body's bytes are gone by the time the
 * operation runs: {@code loadRequestContents()} returns nothing. The values are still there, in the
 * parameter map, after the query string's own: Tomcat parses the query first, then the body, and
 * keeps each name's values in that order. Removing as many leading values of each name as the raw
 * query carries leaves exactly the body's values, so the sidecar, which merges query and form
 * parameters as one multiset, sees each value once and in order.
 */
final class FormBody {

	static final String MEDIA_TYPE = "application/x-www-form-urlencoded";
	/** What a rebuilt body is sent as: it is encoded here, in UTF-8. */
	static final String CONTENT_TYPE = MEDIA_TYPE + ";charset=UTF-8";

	private FormBody() {}

	/** Whether a Content-Type names a form body (case-insensitive, parameters ignored), as Tomcat decides. */
	static boolean isForm(String contentType) {
		return MEDIA_TYPE.equals(FhirJson.mediaType(contentType));
	}

	/**
	 * The form body's parameters, encoded again: the parameter map's values of each name without the
	 * ones the raw query string already carries. Names keep the map's order (first appearance);
	 * within a name the values keep theirs. Empty when the body had no parameters.
	 */
	static String rebuild(Map<String, String[]> parameterMap, String rawQuery) {
		Map<String, Integer> inQuery = countByName(rawQuery);
		StringJoiner body = new StringJoiner("&");
		for (Map.Entry<String, String[]> entry : parameterMap.entrySet()) {
			String[] values = entry.getValue() == null ? new String[0] : entry.getValue();
			int skip = Math.min(inQuery.getOrDefault(entry.getKey(), 0), values.length);
			for (int i = skip; i < values.length; i++) {
				body.add(encode(entry.getKey()) + "=" + encode(values[i] == null ? "" : values[i]));
			}
		}
		return body.toString();
	}

	/**
	 * How many values of each (decoded) name a raw query string carries, counted as Tomcat parses it:
	 * {@code &}-separated, {@code +} is a space, a parameter without {@code =} has an empty value,
	 * empty names are skipped. A name that cannot be decoded is not counted (Tomcat drops it too and
	 * marks the request, see {@link #PARSE_FAILED_ATTRIBUTE}).
	 */
	static Map<String, Integer> countByName(String rawQuery) {
		Map<String, Integer> counts = new HashMap<>();
		if (rawQuery == null || rawQuery.isEmpty()) {
			return counts;
		}
		for (String pair : rawQuery.split("&")) {
			if (pair.isEmpty()) {
				continue;
			}
			int equals = pair.indexOf('=');
			String rawName = equals < 0 ? pair : pair.substring(0, equals);
			if (rawName.isEmpty()) {
				continue;
			}
			try {
				counts.merge(URLDecoder.decode(rawName, StandardCharsets.UTF_8), 1, Integer::sum);
			} catch (IllegalArgumentException e) {
				// malformed %-escape: not a parameter Tomcat kept
			}
		}
		return counts;
	}

	/**
	 * Tomcat's request attribute (Globals.PARAMETER_PARSE_FAILED_ATTR) set when the query or form body
	 * could not be parsed completely (a malformed escape, too many parameters): some values were dropped,
	 * so a rebuilt body would not mean what the caller sent.
	 */
	static final String PARSE_FAILED_ATTRIBUTE = "org.apache.catalina.parameter_parse_failed";

	private static String encode(String text) {
		return URLEncoder.encode(text, StandardCharsets.UTF_8);
	}
}
