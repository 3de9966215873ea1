package org.dicomfhir.hapi.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.catalina.Context;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.core.StandardHost;
import org.apache.catalina.startup.Tomcat;
import org.apache.tomcat.util.descriptor.web.FilterDef;
import org.apache.tomcat.util.descriptor.web.FilterMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.springframework.mock.web.MockHttpServletRequest;

/**
 * The limits filter and the error valve in a real Tomcat with our server's connector settings
 * (64 KiB header buffer, relaxed query characters), spoken to over a raw socket so that requests
 * no HTTP client would send can be sent.
 */
class HttpErrorsTest {

	private static final Logger TOMCAT_LOG = Logger.getLogger("org.apache");

	static {
		TOMCAT_LOG.setLevel(Level.SEVERE);
	}

	private Tomcat tomcat;
	private volatile String servletSaw;

	/** A servlet that reads the body and answers 200 with its size, or sends 404 on /missing. */
	private final class Echo extends HttpServlet {
		@Override
		protected void service(HttpServletRequest request, HttpServletResponse response) throws IOException {
			if (request.getRequestURI().equals("/missing")) {
				response.sendError(404);
				return;
			}
			int size;
			try (InputStream in = request.getInputStream()) {
				size = in.readAllBytes().length;
			} catch (IOException e) {
				servletSaw = e.getMessage();
				response.sendError(400);
				return;
			}
			servletSaw = "read " + size;
			response.setContentType("text/plain");
			response.getWriter().write("ok " + size);
		}
	}

	@BeforeEach
	void start() throws Exception {
		tomcat = new Tomcat();
		String dir = Files.createTempDirectory("http-errors").toString();
		tomcat.setBaseDir(dir);
		Connector connector = new Connector();
		connector.setPort(0);
		connector.setProperty("address", "127.0.0.1");
		connector.setProperty("relaxedQueryChars", "|[]{}\\");
		connector.setProperty("maxHttpRequestHeaderSize", Integer.toString(64 * 1024));
		connector.setProperty("maxHeaderCount", "200");
		tomcat.setConnector(connector);
		((StandardHost) tomcat.getHost()).setErrorReportValveClass(OperationOutcomeErrorReportValve.class.getName());
		Context context = tomcat.addContext("", dir);
		Tomcat.addServlet(context, "echo", new Echo());
		context.addServletMappingDecoded("/*", "echo");
		HapiProperties.Limits limits = new HapiProperties.Limits();
		limits.setMaxBodySize(org.springframework.util.unit.DataSize.ofKilobytes(64));
		FilterDef filter = new FilterDef();
		filter.setFilterName("limits");
		filter.setFilter(new RequestLimitsFilter(limits));
		context.addFilterDef(filter);
		FilterMap map = new FilterMap();
		map.setFilterName("limits");
		map.addURLPattern("/*");
		context.addFilterMap(map);
		tomcat.start();
	}

	@AfterEach
	void stop() throws Exception {
		tomcat.stop();
		tomcat.destroy();
	}

	/** Status line and body of one raw HTTP/1.1 exchange (Connection: close). */
	private String[] exchange(String head, byte[] body) throws IOException {
		try (Socket socket = new Socket(InetAddress.getLoopbackAddress(), tomcat.getConnector().getLocalPort())) {
			socket.setSoTimeout(10_000);
			OutputStream out = socket.getOutputStream();
			out.write(head.getBytes(StandardCharsets.ISO_8859_1));
			if (body != null) {
				try {
					out.write(body);
				} catch (IOException e) {
					// the server may answer and close before it has read all of a refused body
				}
			}
			out.flush();
			String answer = new String(socket.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
			int split = answer.indexOf("\r\n\r\n");
			String headers = split < 0 ? answer : answer.substring(0, split);
			String content = split < 0 ? "" : answer.substring(split + 4);
			return new String[] {headers, content};
		}
	}

	private String[] get(String target, String extraHeaders) throws IOException {
		return exchange("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extraHeaders + "Connection: close\r\n\r\n", null);
	}

	private static void assertOutcome(String[] answer, int status, String code) {
		assertTrue(answer[0].startsWith("HTTP/1.1 " + status + " "), answer[0]);
		assertTrue(answer[0].toLowerCase().contains("content-type: application/fhir+json"), answer[0]);
		assertTrue(answer[1].contains("\"resourceType\":\"OperationOutcome\""), answer[1]);
		assertTrue(answer[1].contains("\"code\":\"" + code + "\""), answer[1]);
	}

	@Test
	void aLongUriIs414FromTheFilterAndBeyondTomcatsBufferFromTheValve() throws IOException {
		assertOutcome(get("/fhir/Patient?name=" + "a".repeat(20_000), ""), 414, "too-long");
		assertOutcome(get("/fhir/Patient?name=" + "a".repeat(70_000), ""), 414, "too-long");
		assertTrue(get("/fhir/Patient?name=" + "a".repeat(8_000), "")[0].startsWith("HTTP/1.1 200"));
	}

	@Test
	void aMethodFhirDoesNotUseIs405NotA5xx() throws IOException {
		for (String method : new String[] {"FOO", "TRACE", "PROPFIND"}) {
			String[] answer = exchange(method + " /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", null);
			assertOutcome(answer, 405, "not-supported"); // TRACE: Tomcat's own 405, rendered by the valve
			assertTrue(method.equals("TRACE") || answer[0].contains("Allow: GET, HEAD, POST"), answer[0]);
		}
	}

	@Test
	void largeOrManyHeadersAre431() throws IOException {
		assertOutcome(get("/fhir/metadata", "X-Big: " + "x".repeat(20_000) + "\r\n"), 431, "too-long");
		assertOutcome(get("/fhir/metadata", "X-Big: " + "x".repeat(70_000) + "\r\n"), 431, "too-long");
		StringBuilder many = new StringBuilder();
		for (int i = 0; i < 150; i++) {
			many.append("X-H").append(i).append(": v\r\n");
		}
		assertOutcome(get("/fhir/metadata", many.toString()), 431, "too-long");
		for (int i = 150; i < 300; i++) {
			many.append("X-H").append(i).append(": v\r\n");
		}
		assertOutcome(get("/fhir/metadata", many.toString()), 431, "too-long"); // over Tomcat's 200: the valve
	}

	@Test
	void aLargeBodyIs413AndAChunkedOneIsCutOff() throws IOException {
		byte[] big = new byte[100 * 1024];
		String[] declared = exchange("POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
				+ "Content-Length: " + big.length + "\r\nConnection: close\r\n\r\n", big);
		assertOutcome(declared, 413, "too-long");

		String chunk = Integer.toHexString(big.length) + "\r\n";
		byte[] chunked = (chunk + new String(big, StandardCharsets.ISO_8859_1) + "\r\n0\r\n\r\n").getBytes(StandardCharsets.ISO_8859_1);
		exchange("POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
				+ "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", chunked);
		assertTrue(servletSaw.contains("larger than"), servletSaw);

		String[] small = exchange("POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
				"abc".getBytes(StandardCharsets.ISO_8859_1));
		assertTrue(small[0].startsWith("HTTP/1.1 200"), small[0]);
	}

	@Test
	void malformedRequestsAndServletErrorsAreOperationOutcomes() throws IOException {
		assertOutcome(get("/fhir/Patient?name=a%zz", ""), 400, "invalid");
		assertOutcome(get("/fhir/Patient?name=100%", ""), 400, "invalid");
		assertOutcome(get("/fhir/Patient?name=<script>", ""), 400, "invalid"); // not relaxed: Tomcat refuses
		assertFalseContains(get("/fhir/Patient?name=<script>", "")[1], "script");
		assertOutcome(exchange("G@T / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", null), 400, "invalid");
		assertOutcome(get("/missing", ""), 404, "not-found"); // a sendError without Spring's error page
		assertTrue(get("/fhir/Patient?identifier=urn:x|a\\,b", "")[0].startsWith("HTTP/1.1 200"));
	}

	@Test
	void aFormBodyHapiWouldDecodeIsCheckedAndHandedOnUnchanged() throws IOException {
		String head = "POST /fhir/Patient/p1/$fetch-imaging?modality=CT HTTP/1.1\r\nHost: localhost\r\n"
				+ "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\nContent-Length: ";
		byte[] bad = "detail=%zz".getBytes(StandardCharsets.ISO_8859_1);
		assertOutcome(exchange(head + bad.length + "\r\n\r\n", bad), 400, "invalid");

		byte[] good = "detail=study&x=%7C".getBytes(StandardCharsets.ISO_8859_1);
		String[] answer = exchange(head + good.length + "\r\n\r\n", good);
		assertTrue(answer[0].startsWith("HTTP/1.1 200"), answer[0]);
		assertEquals("ok " + good.length, answer[1]);
	}

	private static void assertFalseContains(String text, String part) {
		assertTrue(!text.contains(part), text);
	}

	@Test
	void springsErrorPageIsAnOperationOutcome() {
		MockHttpServletRequest request = new MockHttpServletRequest("GET", "/error");
		request.setAttribute("jakarta.servlet.error.status_code", 404);
		var answer = new FhirErrorController().error(request);
		assertEquals(404, answer.getStatusCode().value());
		assertEquals("application/fhir+json;charset=UTF-8", answer.getHeaders().getContentType().toString());
		String body = new String(answer.getBody(), StandardCharsets.UTF_8);
		assertTrue(body.contains("\"code\":\"not-found\""), body);

		MockHttpServletRequest unknown = new MockHttpServletRequest("GET", "/error");
		assertEquals(500, new FhirErrorController().error(unknown).getStatusCode().value());
	}
}
