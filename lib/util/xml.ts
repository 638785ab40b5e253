// Text placed in XML (Alexa's SSML, the loss plot's SVG): the five characters XML reserves, as entities.
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}
