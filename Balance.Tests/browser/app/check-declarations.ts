// tsc: the declarations the package ships describe exactly its code. ./code holds the package's own .js files
// without their .d.ts (the test copies them there), so TypeScript infers their types from the JavaScript;
// '@balance/client' resolves through the package's exports to the declarations.
import * as Code from './code/balance-client.js';
import * as Declared from '@balance/client';
import * as CodeReact from './code/balance-react.js';
import * as DeclaredReact from '@balance/client/react';
import * as CodeVue from './code/balance-vue.js';
import * as DeclaredVue from '@balance/client/vue';

type IsAny<T> = 0 extends 1 & T ? true : false;
// JavaScript parameters all count as optional, so compare how many a function takes, not how many it needs.
type Arity<T> = IsAny<T> extends true ? 'value'
  : T extends abstract new (...args: infer P) => unknown ? `new(${Required<P>['length']})`
  : T extends (...args: infer P) => unknown ? `(${Required<P>['length']})` : 'value';
type Public<K> = K extends `_${string}` ? never : K;
type Shape<T> = { [K in keyof T as Public<K>]: Arity<T[K]> };
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// The names that differ: missing on one side, or a function on one side and not the other, or another arity.
type Drift<D, C> = { [K in keyof D | keyof C]: K extends keyof D ? K extends keyof C ? Same<D[K], C[K]> extends true ? never : K : K : K }[keyof D | keyof C];
type None<T> = [T] extends [never] ? 'none' : T;

export const exportsDrift: None<Drift<Shape<typeof Declared>, Shape<typeof Code>>> = 'none';
export const serviceDrift: None<Drift<Shape<Declared.BalanceWebSocketService>, Shape<InstanceType<typeof Code.BalanceWebSocketService>>>> = 'none';
export const serviceStaticDrift: None<Drift<Shape<typeof Declared.BalanceWebSocketService>, Shape<typeof Code.BalanceWebSocketService>>> = 'none';
export const errorDrift: None<Drift<Shape<typeof Declared.BalanceError>, Shape<typeof Code.BalanceError>>> = 'none';
export const statusDrift: None<Drift<typeof Declared.STATUS, typeof Code.STATUS>> = 'none';
export const leaseDrift: None<Drift<Shape<ReturnType<typeof Declared.acquireBalanceService>>, Shape<ReturnType<typeof Code.acquireBalanceService>>>> = 'none';
export const reactDrift: None<Drift<Shape<typeof DeclaredReact>, Shape<typeof CodeReact>>> = 'none';
export const vueDrift: None<Drift<Shape<typeof DeclaredVue>, Shape<typeof CodeVue>>> = 'none';
// 'react' has no types here, so the hook's result is compared by its names.
export const reactResultDrift: None<Drift<Record<keyof DeclaredReact.UseBalanceResult, 0>, Record<keyof ReturnType<typeof CodeReact.useBalance>, 0>>> = 'none';
export const vueResultDrift: None<Drift<Record<keyof DeclaredVue.UseBalanceResult, 0>, Record<keyof ReturnType<typeof CodeVue.useBalance>, 0>>> = 'none';
