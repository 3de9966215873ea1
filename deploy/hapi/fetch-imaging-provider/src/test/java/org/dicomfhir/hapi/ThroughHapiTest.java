package org.dicomfhir.hapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Requests through HAPI's RestfulServer in a real Tomcat to the provider and on to a fake sidecar:
 * what the container and HAPI do to a request before the provider runs is part of what is tested.
 */
class ThroughHapiTest {

	private static final String FORM = "application/x-www-form-urlencoded";
	private static final String OPERATION = "Patient/p1/$fetch-imaging";

	private FakeSidecar sidecar;
	private HapiInTomcat hapi;

	@BeforeEach
	void start() throws Exception {
		sidecar = new FakeSidecar();
		hapi = new HapiInTomcat(new FetchImagingProvider(new SidecarForwarder(sidecar.config("s", 5, false))));
	}

	@AfterEach
	void stop() throws Exception {
		hapi.close();
		sidecar.close();
	}

	@Test
	void aFormBodyWithoutQueryStringReachesTheSidecar() throws Exception {
		// HAPI fills its parameters from the servlet's map here, and Tomcat consumes the body for it
		HttpResponse<String> answer = hapi.send("POST", OPERATION, FORM, "persist=false");

		assertEquals(200, answer.statusCode(), answer.body());
		assertEquals("persist=false", sidecar.seen().bodyAsString());
		assertEquals("application/x-www-form-urlencoded;charset=UTF-8", sidecar.seen().header("Content-Type"));

		hapi.send("POST", "Patient/$fetch-imaging", FORM + "; charset=UTF-8",
				"detail=zzz&identifier=urn%3Ax%7Ca%5C%2Cb&modality=CT%2CMR&modality=US");
		assertEquals("/fhir/Patient/$fetch-imaging", sidecar.seen().rawPath());
		assertEquals(null, sidecar.seen().rawQuery());
		assertEquals("detail=zzz&identifier=urn%3Ax%7Ca%5C%2Cb&modality=CT%2CMR&modality=US", sidecar.seen().bodyAsString());
	}

	@Test
	void formAndQueryParametersReachTheSidecarEachOnceInOrder() throws Exception {
		// a Content-Type HAPI does not recognise as a form (case) but Tomcat does: Tomcat consumes it
		HttpResponse<String> answer = hapi.send("POST", OPERATION + "?modality=CT&modality=CT&persist",
				"Application/X-WWW-Form-Urlencoded", "modality=CT&persist=false&modality=MR");

		assertEquals(200, answer.statusCode(), answer.body());
		assertEquals("modality=CT&modality=CT&persist", sidecar.seen().rawQuery());
		// the body's values, each once: names in first-appearance order, each name's values in order
		assertEquals("modality=CT&modality=MR&persist=false", sidecar.seen().bodyAsString());

		// HAPI reads the body itself when a query string is present and the type is a plain form one
		hapi.send("POST", OPERATION + "?modality=CT", FORM, "persist=false&modality=MR");
		assertEquals("modality=CT", sidecar.seen().rawQuery());
		assertEquals("persist=false&modality=MR", sidecar.seen().bodyAsString());
	}

	@Test
	void aFormBodyTomcatCouldNotParseIs400NotSilentlyShortened() throws Exception {
		HttpResponse<String> answer = hapi.send("POST", OPERATION, FORM, "persist=false&detail=%zz");

		assertEquals(400, answer.statusCode());
		assertOperationOutcome(answer, "invalid");
		assertTrue(sidecar.requests().isEmpty(), "the sidecar must not see a shortened request");
	}

	@Test
	void everyParameterValueReachesTheSidecarUnjudgedAndTheOperationStaysListed() throws Exception {
		List<String> queries = List.of(
				"modality=CT,MR",
				"modality=CT,MR&modality=US",
				"identifier=urn:x%7Ca,b",
				"identifier=urn:x%7Ca%5C,b",
				"accession=A1,A2",
				"studyDate=ge2020-01-01,le2021-01-01",
				"studyDate=zzz",
				"studyDate=ge2020&studyDate=le2021&studyDate=le2022",
				"persist=maybe",
				"detail=zzz",
				"identifier:missing=zzz",
				"modality:of-type=x");
		for (String query : queries) {
			HttpResponse<String> answer = hapi.send("GET", OPERATION + "?" + query, null, null);
			assertEquals(200, answer.statusCode(), query + " -> " + answer.body());
			assertEquals(query, sidecar.seen().rawQuery());
		}
		hapi.send("POST", OPERATION, FORM, "modality=CT%2CMR&studyDate=zzz");
		assertEquals("modality=CT%2CMR&studyDate=zzz", sidecar.seen().bodyAsString());

		String metadata = hapi.send("GET", "metadata", null, null).body();
		assertTrue(metadata.contains("\"name\":\"fetch-imaging\""), metadata);
		String definition = hapi.send("GET", "OperationDefinition/Patient-it-fetch-imaging", null, null).body();
		Set<String> names = Set.of("identifier", "modality", "studyDate", "accession", "studyInstanceUid", "detail",
				"persist", "return");
		for (String name : names) {
			assertTrue(definition.contains("\"name\":\"" + name + "\""), name + " in " + definition);
		}
		assertTrue(definition.contains("\"name\":\"modality\",\"use\":\"in\",\"min\":0,\"max\":\"*\""), definition);
		assertTrue(definition.contains("\"name\":\"studyDate\",\"use\":\"in\",\"min\":0,\"max\":\"2\""), definition);
	}

	@Test
	void getStaysGetTheSidecars405IsRelayedAndOtherMethodsGetAnOperationOutcome() throws Exception {
		sidecar.replyStatus = 405;
		sidecar.replyContentType = "application/fhir+json";
		sidecar.replyAllow = "POST";
		sidecar.replyBody = "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"not-supported\"}]}";

		HttpResponse<String> get = hapi.send("GET", OPERATION + "?detail=study", null, null);
		assertEquals("GET", sidecar.seen().method());
		assertEquals(405, get.statusCode());
		assertEquals(sidecar.replyBody, get.body());
		assertEquals("POST", get.headers().firstValue("Allow").orElse(null));

		int relayed = sidecar.requests().size();
		for (String method : List.of("PUT", "DELETE", "PATCH", "HEAD")) {
			HttpResponse<String> answer = hapi.send(method, OPERATION, "application/fhir+json", method.equals("HEAD") ? null : "{}");
			assertTrue(answer.statusCode() == 400 || answer.statusCode() == 405, method + " -> " + answer.statusCode());
			assertTrue(answer.headers().firstValue("Content-Type").orElse("").startsWith("application/fhir+json"), method);
			if (!method.equals("HEAD")) {
				assertOperationOutcome(answer, null);
			}
		}
		assertEquals(relayed, sidecar.requests().size(), "no other method reaches the sidecar");
	}

	@Test
	void aBodyOverTheLimitIs413AndIsNotRelayed() throws Exception {
		String big = "{\"resourceType\":\"Parameters\",\"x\":\"" + "a".repeat(1024 * 1024) + "\"}";

		HttpResponse<String> declared = hapi.send("POST", OPERATION, "application/fhir+json", big);
		assertEquals(413, declared.statusCode());
		assertOperationOutcome(declared, "too-long");

		// chunked: no Content-Length to check first, the provider stops reading after the limit
		HttpRequest chunked = HttpRequest.newBuilder(URI.create(hapi.base() + "/" + OPERATION))
				.header("Content-Type", "application/fhir+json")
				.POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(big.getBytes())))
				.build();
		HttpResponse<String> streamed = HttpClient.newHttpClient().send(chunked, HttpResponse.BodyHandlers.ofString());
		assertEquals(413, streamed.statusCode());
		assertOperationOutcome(streamed, "too-long");

		assertTrue(sidecar.requests().isEmpty());
		assertEquals(200, hapi.send("POST", OPERATION, "application/fhir+json", "{\"resourceType\":\"Parameters\"}")
				.statusCode());
	}

	private static void assertOperationOutcome(HttpResponse<String> answer, String code) {
		assertTrue(answer.headers().firstValue("Content-Type").orElse("").startsWith("application/fhir+json"),
				answer.headers().map().toString());
		assertTrue(answer.body().contains("\"resourceType\":\"OperationOutcome\""), answer.body());
		if (code != null) {
			assertTrue(answer.body().contains("\"code\":\"" + code + "\""), answer.body());
		}
	}

}
