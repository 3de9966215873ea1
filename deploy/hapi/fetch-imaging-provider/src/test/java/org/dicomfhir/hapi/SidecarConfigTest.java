package org.dicomfhir.hapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SidecarConfigTest {

	@Test
	void defaultsWhenNothingIsSet() {
		SidecarConfig config = SidecarConfig.from(k -> null, k -> null);

		assertEquals("http://127.0.0.1:8090/fhir", config.fhirBase());
		assertNull(config.relaySecret());
		assertEquals(Duration.ofSeconds(60), config.timeout());
		assertFalse(config.forwardAuthorization());
		assertEquals(1024 * 1024, config.maxBodyBytes());
		assertTrue(config.forwardCaller(), "the caller's token goes with the relay secret by default");
	}

	@Test
	void theCallerTokenCanBeSwitchedOff() {
		Map<String, String> env = Map.of("FETCH_IMAGING_FORWARD_CALLER", "false");
		assertFalse(SidecarConfig.from(k -> null, env::get).forwardCaller());
	}

	@Test
	void systemPropertyWinsOverEnvironment() {
		Map<String, String> props = Map.of(
				"fetch-imaging.sidecar-url", "http://sidecar:9000/",
				"fetch-imaging.timeout-seconds", "2.5");
		Map<String, String> env = Map.of(
				"FETCH_IMAGING_SIDECAR_URL", "http://ignored:1",
				"FETCH_IMAGING_RELAY_SECRET", "from-env",
				"FETCH_IMAGING_FORWARD_AUTHORIZATION", "true",
				"FETCH_IMAGING_MAX_BODY_BYTES", "4096");

		SidecarConfig config = SidecarConfig.from(props::get, env::get);

		assertEquals("http://sidecar:9000/fhir", config.fhirBase());
		assertEquals("from-env", config.relaySecret());
		assertEquals(Duration.ofMillis(2500), config.timeout());
		assertTrue(config.forwardAuthorization());
		assertEquals(4096, config.maxBodyBytes());
		assertFalse(config.toString().contains("from-env"), "the secret must not be printed");
	}

	@Test
	void theFirstWavesSecretNameIsStillRead() {
		Map<String, String> env = Map.of("FETCH_IMAGING_SHARED_SECRET", "old-name");
		assertEquals("old-name", SidecarConfig.from(k -> null, env::get).relaySecret());
		Map<String, String> both = Map.of(
				"FETCH_IMAGING_SHARED_SECRET", "old-name", "FETCH_IMAGING_RELAY_SECRET", "new-name");
		assertEquals("new-name", SidecarConfig.from(k -> null, both::get).relaySecret());
	}
}
