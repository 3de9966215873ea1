package org.dicomfhir.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.catalina.Context;
import org.apache.catalina.LifecycleException;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.startup.Tomcat;

/**
 * HAPI's RestfulServer with only our provider, in an embedded Tomcat on an ephemeral loopback
 * port, configured like our server (UTF-8 request bodies as Spring Boot forces them, FHIR's
 * query characters relaxed). What Tomcat and HAPI do to a request before the provider sees it is
 * real here; no JPA.
 */
final class HapiInTomcat implements AutoCloseable {

	/** Tomcat logs start, stop and (for the HTTP client's threads) leak warnings through JUL: quiet here. */
	private static final Logger TOMCAT_LOG = Logger.getLogger("org.apache");

	static {
		TOMCAT_LOG.setLevel(Level.SEVERE);
	}

	private final Tomcat tomcat = new Tomcat();
	private final Path baseDir;
	private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

	HapiInTomcat(FetchImagingProvider provider) throws IOException, LifecycleException {
		baseDir = Files.createTempDirectory("hapi-in-tomcat");
		tomcat.setBaseDir(baseDir.toString());
		Connector connector = new Connector();
		connector.setPort(0);
		connector.setProperty("address", "127.0.0.1");
		connector.setProperty("relaxedQueryChars", "|[]{}\\");
		tomcat.setConnector(connector);
		Context context = tomcat.addContext("", baseDir.toString());
		context.setRequestCharacterEncoding("UTF-8");
		RestfulServer server = new RestfulServer(FhirContext.forR4Cached());
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		server.registerProvider(provider);
		Tomcat.addServlet(context, "fhir", server).setLoadOnStartup(1);
		context.addServletMappingDecoded("/fhir/*", "fhir");
		tomcat.start();
	}

	String base() {
		return "http://127.0.0.1:" + tomcat.getConnector().getLocalPort() + "/fhir";
	}

	/** {@code method base/pathAndQuery} with an optional body and Content-Type. */
	HttpResponse<String> send(String method, String pathAndQuery, String contentType, String body)
			throws IOException, InterruptedException {
		HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base() + "/" + pathAndQuery))
				.method(method, body == null
						? HttpRequest.BodyPublishers.noBody()
						: HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
		if (contentType != null) {
			request.header("Content-Type", contentType);
		}
		return client.send(request.build(), HttpResponse.BodyHandlers.ofString());
	}

	@Override
	public void close() throws LifecycleException {
		tomcat.stop();
		tomcat.destroy();
	}
}
