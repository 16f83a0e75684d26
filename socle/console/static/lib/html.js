// Preact + htm: components written as tagged templates, no build step (see scripts/vendor-console.sh).
import { h, render, Fragment, createContext } from '../vendor/preact.js';
import htm from '../vendor/htm.js';

export const html = htm.bind(h);
export { h, render, Fragment, createContext };
export { useState, useEffect, useMemo, useRef, useCallback, useContext, useReducer } from '../vendor/hooks.js';
