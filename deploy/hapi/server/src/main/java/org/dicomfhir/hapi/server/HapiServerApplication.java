package org.dicomfhir.hapi.server;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.annotation.Import;

/**
 * A small HAPI FHIR JPA server (R4 only) for local runs and tests of dicom-fhir-sidecar.
 *
 * <p>HAPI's starter project is a war, not a library, so we wire the published HAPI modules
 * ourselves: HAPI's own configuration classes provide the DAOs, search, batch jobs and
 * subscriptions; our three config classes add what HAPI expects the application to decide
 * (storage, subscriptions, the REST servlet).
 */
@SpringBootApplication(
		// Thymeleaf (narratives), Quartz (HAPI schedules its own jobs) and the Elasticsearch client
		// (an optional Hibernate Search backend) arrive with HAPI's dependencies; Boot must not
		// configure them as if they were ours (an ES client would sniff for a cluster forever).
		exclude = {
			ThymeleafAutoConfiguration.class,
			QuartzAutoConfiguration.class,
			ElasticsearchRestClientAutoConfiguration.class,
			ElasticsearchClientAutoConfiguration.class
		})
@EnableConfigurationProperties(HapiProperties.class)
@Import({
	JpaR4Config.class, // FhirContext R4, DAOs, resource providers, system provider
	HapiJpaConfig.class, // fulltext stubs, paging provider, resource counts (hibernate search stays off)
	JpaBatch2Config.class, // batch2 job coordinator: $reindex after SearchParameter changes, $expunge, ...
	Batch2JobsConfig.class, // ... and the job definitions themselves
	ThreadPoolFactoryConfig.class, // thread pools for parallel transaction/batch entries
	StorageConfig.class,
	SubscriptionConfig.class,
	FhirServerConfig.class,
	HttpErrorsConfig.class // every error outside HAPI as an OperationOutcome, request limits
})
public class HapiServerApplication {

	public static void main(String[] args) {
		SpringApplication.run(HapiServerApplication.class, args);
	}
}
