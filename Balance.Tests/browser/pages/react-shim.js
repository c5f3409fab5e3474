// React 18 ships UMD builds only; this gives the page's import map an ES module named 'react'.
const React = window.React;
export const { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, createElement } = React;
export default React;
