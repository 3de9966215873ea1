package org.dicomfhir.hapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class FormBodyTest {

	@Test
	void theBodyIsTheParameterMapWithoutTheQueryStringsValues() {
		// as Tomcat fills the map: the query's values of a name first, then the body's
		Map<String, String[]> parameters = new LinkedHashMap<>();
		parameters.put("modality", new String[] {"CT", "CT", "MR"});
		parameters.put("persist", new String[] {"", "false"});
		parameters.put("detail", new String[] {"study"});
		parameters.put("identifier", new String[] {"urn:x|a\\,b c"});

		String body = FormBody.rebuild(parameters, "modality=CT&persist&detail=study");

		assertEquals("modality=CT&modality=MR&persist=false&identifier=urn%3Ax%7Ca%5C%2Cb+c", body);
	}

	@Test
	void queryNamesAreCountedAsTomcatDecodesThem() {
		Map<String, Integer> counts = FormBody.countByName("a+b=1&a%20b=2&&=x&c&%zz=3&d=%zz");

		assertEquals(2, counts.get("a b"));
		assertEquals(1, counts.get("c"));
		assertEquals(1, counts.get("d"));
		assertEquals(3, counts.size(), counts.toString());
		assertTrue(FormBody.countByName(null).isEmpty());
	}

	@Test
	void nothingLeftMeansAnEmptyBody() {
		assertEquals("", FormBody.rebuild(Map.of("detail", new String[] {"study"}), "detail=study"));
		assertEquals("", FormBody.rebuild(Map.of(), null));
	}

	@Test
	void aFormIsRecognisedWhateverItsCaseAndParameters() {
		assertTrue(FormBody.isForm("application/x-www-form-urlencoded"));
		assertTrue(FormBody.isForm("Application/X-WWW-Form-Urlencoded ; charset=UTF-8"));
		assertFalse(FormBody.isForm("application/fhir+json"));
		assertFalse(FormBody.isForm(null));
	}
}
