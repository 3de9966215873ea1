package org.dicomfhir.hapi;

import ca.uhn.fhir.rest.annotation.IdParam;
import ca.uhn.fhir.rest.annotation.Operation;
import ca.uhn.fhir.rest.annotation.OperationParam;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.StringType;
import org.slf4j.LoggerFactory;

/**
 * {@code $fetch-imaging} on Patient, served by the imaging sidecar.
 *
 * <p>HAPI owns the endpoint (so the operation is listed in the CapabilityStatement and has an
 * OperationDefinition); the work is done by the Python sidecar. The request is passed through
 * unchanged (manualRequest/manualResponse): same method, query string, body and content type (a
 * form body the servlet container consumed is rebuilt, see {@link FormBody}), and the sidecar's
 * FHIR answer comes back unchanged (anything else becomes an OperationOutcome, see
 * {@link SidecarForwarder}).
 *
 * <p>Loaded by class name ({@code hapi.fhir.custom-provider-classes}), hence the no-arg
 * constructor that reads its configuration from system properties / environment.
 */
public class FetchImagingProvider {

	public static final String OPERATION = "$fetch-imaging";

	private final SidecarForwarder forwarder;

	public FetchImagingProvider() {
		this(new SidecarForwarder(warnedAbout(SidecarConfig.fromEnvironment())));
	}

	/** Says at start-up what a user would otherwise only see as every call's 401. */
	private static SidecarConfig warnedAbout(SidecarConfig config) {
		if (!config.hasRelaySecret()) {
			LoggerFactory.getLogger(FetchImagingProvider.class).warn(
					"$fetch-imaging: no relay secret ({} / {}): the sidecar will answer every relayed "
							+ "call 401; set it to the sidecar's SIDECAR_RELAY_SECRET",
					SidecarConfig.SECRET_ENV, SidecarConfig.SECRET_PROPERTY);
		}
		return config;
	}

	public FetchImagingProvider(SidecarForwarder forwarder) {
		this.forwarder = forwarder;
	}

	/**
	 * Instance level ({@code Patient/{id}/$fetch-imaging}) and type level
	 * ({@code Patient/$fetch-imaging?identifier=system|value}); GET or POST.
	 *
	 * <p>The parameters are declared so that HAPI lists them (CapabilityStatement, OperationDefinition)
	 * but never judges them: every one is a {@link StringType}, which HAPI fills from any text. Typed
	 * declarations made HAPI refuse values the sidecar accepts or would answer itself: a
	 * {@code TokenParam} (or {@code List<TokenParam>}) is split at commas and a second value is
	 * HAPI-1962 "Multiple values detected for non-repeatable parameter" ({@code modality=CT,MR},
	 * {@code identifier=s|a,b}, {@code accession=A1,A2}); a {@code DateRangeParam} refuses
	 * {@code ge2020,le2021} (HAPI-1883) and any text that is not a date (HAPI-1940); a
	 * {@code BooleanType} refuses {@code persist=maybe}. The values are not used here: the raw query
	 * (and body) go to the sidecar, which validates and interprets them, the same for every caller.
	 */
	@Operation(
			name = OPERATION,
			typeName = "Patient",
			idempotent = true,
			manualRequest = true,
			manualResponse = true,
			returnParameters = @OperationParam(name = "return", type = Bundle.class, min = 1, max = 1))
	public void fetchImaging(
			@IdParam(optional = true) IdType patientId,
			@OperationParam(name = "identifier", min = 0, max = 1) StringType identifier,
			@OperationParam(name = "modality", min = 0, max = OperationParam.MAX_UNLIMITED) List<StringType> modality,
			@OperationParam(name = "studyDate", min = 0, max = 2) List<StringType> studyDate,
			@OperationParam(name = "accession", min = 0, max = 1) StringType accession,
			@OperationParam(name = "studyInstanceUid", min = 0, max = 1) StringType studyInstanceUid,
			@OperationParam(name = "detail", min = 0, max = 1) StringType detail,
			@OperationParam(name = "persist", min = 0, max = 1) StringType persist,
			RequestDetails requestDetails,
			HttpServletRequest servletRequest,
			HttpServletResponse servletResponse)
			throws IOException {
		SidecarForwarder.Reply reply;
		try {
			RequestBody body = RequestBody.of(requestDetails, servletRequest, forwarder.config().maxBodyBytes());
			SidecarForwarder.Call call = new SidecarForwarder.Call(
					servletRequest.getMethod(),
					relativePath(patientId),
					servletRequest.getQueryString(),
					body.bytes(),
					body.contentType(),
					servletRequest.getHeader("Accept"),
					servletRequest.getHeader("Authorization"),
					servletRequest.getHeader(SidecarForwarder.REQUEST_ID_HEADER));
			reply = forwarder.forward(call);
		} catch (RequestBody.Refused refused) {
			reply = refused.reply();
		}
		write(reply, servletResponse);
	}

	/** {@code Patient/{id}/$fetch-imaging} or {@code Patient/$fetch-imaging}, relative to a FHIR base. */
	static String relativePath(IdType patientId) {
		if (patientId == null || !patientId.hasIdPart()) {
			return "Patient/" + OPERATION;
		}
		String id = URLEncoder.encode(patientId.getIdPart(), StandardCharsets.UTF_8);
		return "Patient/" + id + "/" + OPERATION;
	}

	/** Copies the sidecar's answer (or our OperationOutcome) to the servlet response unchanged. */
	static void write(SidecarForwarder.Reply reply, HttpServletResponse servletResponse) throws IOException {
		servletResponse.setStatus(reply.status());
		if (reply.contentType() != null) {
			servletResponse.setContentType(reply.contentType());
		}
		if (reply.allow() != null) {
			servletResponse.setHeader("Allow", reply.allow());
		}
		byte[] body = reply.body() == null ? new byte[0] : reply.body();
		servletResponse.setContentLength(body.length);
		try (OutputStream out = servletResponse.getOutputStream()) {
			out.write(body);
		}
	}
}
