// Grammars for constrained decoding (structured outputs): GBNF and JSON Schema in, token masks out.
export { Grammar, GrammarError } from './grammar';
export { GrammarMatcher, GrammarVocabulary } from './matcher';
