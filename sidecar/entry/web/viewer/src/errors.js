/**
 * What went wrong, in the words a user needs: signed out (sign in again), not available to
 * this user (the servers never say whether it exists), or the server could not be reached.
 */

export class SignedOut extends Error {}
export class NotAvailable extends Error {}
export class Unreachable extends Error {}

/**
 * The typed error for an HTTP status (fhirclient's HttpError carries `.status`; fetch gives
 * a Response) or a network failure.
 * @param {any} error
 * @param {string} what what was being read, for the message
 */
export function classify(error, what) {
  if (error instanceof SignedOut || error instanceof NotAvailable) return error;
  const status = error?.status ?? error?.statusCode ?? error?.response?.status;
  if (status === 401) return new SignedOut(`Your sign-in has ended or was not accepted (${what}).`);
  if (status === 403 || status === 404 || status === 410) {
    return new NotAvailable(`${what} is not available to you.`);
  }
  if (status) return new Error(`The server answered ${status} for ${what}.`);
  if (error instanceof TypeError) return new Unreachable(`Could not reach the server for ${what}.`);
  return error instanceof Error ? error : new Error(String(error));
}
