package org.dicomfhir.hapi.server;

import org.apache.catalina.Host;
import org.apache.catalina.Pipeline;
import org.apache.catalina.Valve;
import org.apache.catalina.core.StandardHost;
import org.apache.catalina.valves.ErrorReportValve;
import org.springframework.boot.web.embedded.tomcat.TomcatServletWebServerFactory;
import org.springframework.boot.web.server.WebServerFactoryCustomizer;
import org.springframework.boot.web.servlet.FilterRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.Ordered;

/**
 * Errors outside HAPI answer FHIR too: the request limits filter, Tomcat's error report valve
 * replaced by {@link OperationOutcomeErrorReportValve}, and (by component scan)
 * {@link FhirErrorController} for Spring's error page.
 */
@Configuration
public class HttpErrorsConfig {

	@Bean
	public FilterRegistrationBean<RequestLimitsFilter> requestLimitsFilter(HapiProperties properties) {
		FilterRegistrationBean<RequestLimitsFilter> registration =
				new FilterRegistrationBean<>(new RequestLimitsFilter(properties.getLimits()));
		registration.setName("requestLimitsFilter");
		registration.setOrder(Ordered.HIGHEST_PRECEDENCE); // before anything reads the request
		registration.addUrlPatterns("/*");
		return registration;
	}

	/**
	 * Runs after Spring Boot's own Tomcat customizer (order 0), which adds a plain ErrorReportValve
	 * to the host: that one is removed, ours added, and named the host's error valve class so that
	 * Tomcat does not add its default one behind ours at start-up. Also raises the connector's
	 * header count limit above the filter's, so the filter (431 with a reason) sees the request.
	 */
	@Bean
	public WebServerFactoryCustomizer<TomcatServletWebServerFactory> fhirErrorsOnTomcat(HapiProperties properties) {
		return new FhirErrorsOnTomcat(properties.getLimits());
	}

	/**
	 * Runs after Spring Boot's own Tomcat customizer (order 0), which adds a plain ErrorReportValve
	 * to the host: that one is removed, ours added, and named the host's error valve class so that
	 * Tomcat does not add its default one behind ours at start-up. Also raises the connector's
	 * header count limit above the filter's, so the filter (431 with a reason) sees the request.
	 */
	static final class FhirErrorsOnTomcat implements WebServerFactoryCustomizer<TomcatServletWebServerFactory>, Ordered {
		private final HapiProperties.Limits limits;

		FhirErrorsOnTomcat(HapiProperties.Limits limits) {
			this.limits = limits;
		}

		@Override
		public void customize(TomcatServletWebServerFactory factory) {
			factory.addContextCustomizers(context -> {
				Host host = (Host) context.getParent();
				Pipeline pipeline = host.getPipeline();
				for (Valve valve : pipeline.getValves()) {
					if (valve instanceof ErrorReportValve) {
						pipeline.removeValve(valve);
					}
				}
				pipeline.addValve(new OperationOutcomeErrorReportValve());
				if (host instanceof StandardHost standardHost) {
					standardHost.setErrorReportValveClass(OperationOutcomeErrorReportValve.class.getName());
				}
			});
			factory.addConnectorCustomizers(connector ->
					connector.setProperty("maxHeaderCount", Integer.toString(limits.getMaxHeaderCount() * 2)));
		}

		@Override
		public int getOrder() {
			return Ordered.LOWEST_PRECEDENCE;
		}
	}
}
