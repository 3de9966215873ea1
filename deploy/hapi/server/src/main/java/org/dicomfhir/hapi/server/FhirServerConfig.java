package org.dicomfhir.hapi.server;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.JpaSystemProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.provider.SubscriptionTriggeringProvider;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.HardcodedServerAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/** The FHIR REST endpoint at /fhir: HAPI's JPA providers plus custom providers named in configuration. */
@Configuration
public class FhirServerConfig {

	private static final Logger log = LoggerFactory.getLogger(FhirServerConfig.class);

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			JpaSystemProvider<?, ?> systemProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			Optional<SubscriptionTriggeringProvider> subscriptionTriggering,
			HapiProperties properties) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		server.registerProviders(resourceProviders.createProviders()); // one per resource type
		server.registerProvider(systemProvider); // transaction/batch Bundles, $meta, ...
		subscriptionTriggering.ifPresent(server::registerProvider); // $trigger-subscription
		server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport));
		// search results page through the database, not the heap; a patient's ImagingStudies
		// (the sidecar asks _count=200) come in one page, not four of HAPI's default 50
		pagingProvider.setMaximumPageSize(properties.getMaxPageSize());
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		if (!properties.getServerAddress().isBlank()) {
			server.setServerAddressStrategy(new HardcodedServerAddressStrategy(properties.getServerAddress()));
		}
		for (String className : properties.getCustomInterceptorClasses()) {
			server.registerInterceptor(instantiate(className, "interceptor"));
		}
		for (String className : properties.getCustomProviderClasses()) {
			server.registerProvider(instantiate(className, "provider"));
		}
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> registration = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		registration.setName("fhirServlet");
		// initialise at start-up: the first /fhir/metadata then proves the server is ready
		registration.setLoadOnStartup(1);
		return registration;
	}

	/**
	 * A class from hapi.fhir.custom-*-classes, made with its no-arg constructor. It may come from a
	 * jar added with -Dloader.path, hence the thread context class loader (PropertiesLauncher's).
	 */
	static Object instantiate(String className, String kind) {
		String name = className.trim();
		try {
			ClassLoader loader = Optional.ofNullable(Thread.currentThread().getContextClassLoader())
					.orElse(FhirServerConfig.class.getClassLoader());
			Object instance = Class.forName(name, true, loader).getConstructor().newInstance();
			log.info("Registering custom {} {}", kind, name);
			return instance;
		} catch (ClassNotFoundException e) {
			throw new IllegalStateException(
					"Custom " + kind + " class " + name + " is not on the class path (add its jar with -Dloader.path=...)", e);
		} catch (ReflectiveOperationException e) {
			throw new IllegalStateException("Custom " + kind + " class " + name + " needs a public no-arg constructor", e);
		}
	}
}
