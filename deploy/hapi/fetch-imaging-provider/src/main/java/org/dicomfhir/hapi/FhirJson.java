package org.dicomfhir.hapi;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.util.Locale;
import org.hl7.fhir.r4.model.ResourceType;

/** Whether an HTTP answer is a FHIR resource in JSON, the only kind the provider relays as it is. */
final class FhirJson {

	private static final JsonFactory JSON = new JsonFactory();

	private FhirJson() {}

	/**
	 * True when the Content-Type is {@code application/fhir+json} or {@code application/json}
	 * (parameters such as charset ignored) and the body is one well-formed JSON object whose
	 * {@code resourceType} names an R4 resource type. The whole body is read by a streaming parser
	 * (nothing is built), so a truncated or trailing-garbage body is not FHIR either.
	 */
	static boolean isResource(String contentType, byte[] body) {
		if (!isJson(contentType) || body == null || body.length == 0) {
			return false;
		}
		try (JsonParser parser = JSON.createParser(body)) {
			if (parser.nextToken() != JsonToken.START_OBJECT) {
				return false;
			}
			String resourceType = null;
			JsonToken token;
			while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
				String name = parser.currentName();
				JsonToken value = parser.nextToken();
				if ("resourceType".equals(name) && value == JsonToken.VALUE_STRING) {
					resourceType = parser.getText();
				} else {
					parser.skipChildren();
				}
			}
			return token == JsonToken.END_OBJECT && parser.nextToken() == null && isResourceType(resourceType);
		} catch (IOException e) {
			return false;
		}
	}

	/** The media type alone, lower case; null when there is none. */
	static String mediaType(String contentType) {
		if (contentType == null) {
			return null;
		}
		int semicolon = contentType.indexOf(';');
		String type = (semicolon < 0 ? contentType : contentType.substring(0, semicolon)).trim();
		return type.isEmpty() ? null : type.toLowerCase(Locale.ROOT);
	}

	private static boolean isJson(String contentType) {
		String type = mediaType(contentType);
		return "application/fhir+json".equals(type) || "application/json".equals(type);
	}

	private static boolean isResourceType(String name) {
		if (name == null) {
			return false;
		}
		try {
			ResourceType.fromCode(name);
			return true;
		} catch (Exception e) { // FHIRException: not an R4 resource type
			return false;
		}
	}
}
