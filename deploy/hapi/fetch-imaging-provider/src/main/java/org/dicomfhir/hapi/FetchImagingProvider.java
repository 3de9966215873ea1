package org.dicomfhir.hapi;

import ca.uhn.fhir.rest.annotation.IdParam;
import ca.uhn.fhir.rest.annotation.Operation;
import ca.uhn.fhir.rest.annotation.OperationParam;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.param.DateRangeParam;
import ca.uhn.fhir.rest.param.TokenParam;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.hl7.fhir.r4.model.BooleanType;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.CodeType;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.StringType;

/**
 * {@code $fetch-imaging} on Patient, served by the imaging sidecar.
 *
 * <p>HAPI owns the endpoint (so the operation is listed in the CapabilityStatement and has an
 * OperationDefinition); the work is done by the Python sidecar. The request is passed through
 * unchanged (manualRequest/manualResponse): same method, query string, body and content type,
 * and the sidecar's status, content type and body come back unchanged.
 *
 * <p>Loaded by class name ({@code hapi.fhir.custom-provider-classes}), hence the no-arg
 * constructor that reads its configuration from system properties / environment.
 */
public class FetchImagingProvider {

	public static final String OPERATION = "$fetch-imaging";

	private final SidecarForwarder forwarder;

	public FetchImagingProvider() {
		this(new SidecarForwarder(SidecarConfig.fromEnvironment()));
	}

	public FetchImagingProvider(SidecarForwarder forwarder) {
		this.forwarder = forwarder;
	}

	/**
	 * Instance level ({@code Patient/{id}/$fetch-imaging}) and type level
	 * ({@code Patient/$fetch-imaging?identifier=system|value}); GET or POST.
	 *
	 * <p>The typed parameters document the operation; HAPI parses them from the query string, so a
	 * malformed value is rejected with 400 before the sidecar is called. Their values are not used
	 * here: the raw request goes to the sidecar, which validates and interprets it.
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
			@OperationParam(name = "identifier", min = 0, max = 1) TokenParam identifier,
			@OperationParam(name = "modality", min = 0, max = OperationParam.MAX_UNLIMITED) List<TokenParam> modality,
			@OperationParam(name = "studyDate", min = 0, max = 2) DateRangeParam studyDate,
			@OperationParam(name = "accession", min = 0, max = 1) TokenParam accession,
			@OperationParam(name = "studyInstanceUid", min = 0, max = 1) StringType studyInstanceUid,
			@OperationParam(name = "detail", min = 0, max = 1) CodeType detail,
			@OperationParam(name = "persist", min = 0, max = 1) BooleanType persist,
			RequestDetails requestDetails,
			HttpServletRequest servletRequest,
			HttpServletResponse servletResponse)
			throws IOException {
		String relativePath = relativePath(patientId);
		// loadRequestContents() caches the body, so it is safe even if HAPI read it already
		byte[] body = "GET".equalsIgnoreCase(servletRequest.getMethod()) ? new byte[0] : requestDetails.loadRequestContents();
		SidecarForwarder.Call call = new SidecarForwarder.Call(
				servletRequest.getMethod(),
				relativePath,
				servletRequest.getQueryString(),
				body,
				servletRequest.getContentType(),
				servletRequest.getHeader("Accept"),
				servletRequest.getHeader("Authorization"),
				servletRequest.getHeader(SidecarForwarder.REQUEST_ID_HEADER));
		write(forwarder.forward(call), servletResponse);
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
		byte[] body = reply.body() == null ? new byte[0] : reply.body();
		servletResponse.setContentLength(body.length);
		try (OutputStream out = servletResponse.getOutputStream()) {
			out.write(body);
		}
	}
}
