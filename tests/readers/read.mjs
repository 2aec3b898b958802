// Reads a harvester export with citation-js and prints what it understood as CSL-JSON.
//
//   node read.mjs ris|bibtex|csl-json FILE
//
// Used by tests/readers/harness.py. The input type is forced, so that a file citation-js
// would not recognise fails loudly instead of being guessed at.
import { readFileSync } from 'node:fs'
import { Cite } from '@citation-js/core'
import '@citation-js/plugin-ris'
import '@citation-js/plugin-bibtex'
import '@citation-js/plugin-csl'

const [format, path] = process.argv.slice(2)
const text = readFileSync(path, 'utf8')
const inputs = {
  ris: () => [text, '@ris/file'],
  bibtex: () => [text, '@bibtex/text'],
  'csl-json': () => [JSON.parse(text), '@csl/list+object'],
}
if (!(format in inputs)) {
  console.error(`unknown format ${format}; one of ${Object.keys(inputs).join(', ')}`)
  process.exit(2)
}
const [input, forceType] = inputs[format]()
const cite = new Cite(input, { forceType, generateGraph: false })
process.stdout.write(JSON.stringify(cite.data))
