// fhirclient asks for this only where globalThis.crypto is missing; the viewer's browsers have it.
module.exports = { default: globalThis.crypto };
