<?php
/**
 * A small JSON Schema checker for the keywords our record schemas use (type,
 * const, enum, required, properties, additionalProperties, items, minItems,
 * maxItems, pattern, minLength, maxLength, minimum). It lets the PHP side,
 * including PHP 7.4 without Cargo, check every spool line against the schema
 * files themselves. The authoritative check is the Rust validator, run by
 * the tests when BITVILLE_VALIDATE names it.
 */

namespace BitvilleApm\Tests;

final class SchemaCheck
{
    /** @return string[] problems, empty when the line is valid */
    public static function line($json, $schemaPath)
    {
        static $schemas = [];
        if (!isset($schemas[$schemaPath])) {
            $schemas[$schemaPath] = json_decode((string) file_get_contents($schemaPath), true);
        }
        $value = json_decode($json);
        if ($value === null && json_last_error() !== JSON_ERROR_NONE) {
            return ['not JSON: ' . json_last_error_msg()];
        }
        $errors = [];
        self::check($value, $schemas[$schemaPath], '', $errors);
        return $errors;
    }

    private static function check($v, array $s, $path, array &$errors)
    {
        if (isset($s['type'])) {
            $types = (array) $s['type'];
            $ok = false;
            foreach ($types as $t) {
                $ok = $ok || self::isType($v, $t);
            }
            if (!$ok) {
                $errors[] = $path . ': ' . json_encode($v) . ' is not of type ' . implode('|', $types);
                return;
            }
        }
        if (array_key_exists('const', $s) && $v !== $s['const']) {
            $errors[] = $path . ': must be ' . json_encode($s['const']);
        }
        if (isset($s['enum']) && !in_array($v, $s['enum'], true)) {
            $errors[] = $path . ': ' . json_encode($v) . ' is not one of ' . json_encode($s['enum']);
        }
        if (is_string($v)) {
            $len = function_exists('mb_strlen') ? mb_strlen($v, 'UTF-8') : strlen($v);
            if (isset($s['pattern']) && !preg_match('/' . str_replace('/', '\/', $s['pattern']) . '/u', $v)) {
                $errors[] = $path . ': ' . json_encode($v) . ' does not match ' . $s['pattern'];
            }
            if (isset($s['maxLength']) && $len > $s['maxLength']) {
                $errors[] = $path . ': longer than ' . $s['maxLength'];
            }
            if (isset($s['minLength']) && $len < $s['minLength']) {
                $errors[] = $path . ': shorter than ' . $s['minLength'];
            }
        }
        if ((is_int($v) || is_float($v)) && isset($s['minimum']) && $v < $s['minimum']) {
            $errors[] = $path . ': ' . $v . ' is less than ' . $s['minimum'];
        }
        if (is_object($v)) {
            $props = isset($s['properties']) ? $s['properties'] : [];
            foreach (isset($s['required']) ? $s['required'] : [] as $r) {
                if (!property_exists($v, $r)) {
                    $errors[] = $path . ': missing required ' . $r;
                }
            }
            foreach (get_object_vars($v) as $k => $child) {
                if (isset($props[$k])) {
                    self::check($child, $props[$k], $path . '/' . $k, $errors);
                } elseif (isset($s['additionalProperties'])) {
                    if ($s['additionalProperties'] === false) {
                        $errors[] = $path . ': unexpected property ' . $k;
                    } elseif (is_array($s['additionalProperties'])) {
                        self::check($child, $s['additionalProperties'], $path . '/' . $k, $errors);
                    }
                }
            }
        }
        if (is_array($v)) {
            if (isset($s['minItems']) && count($v) < $s['minItems']) {
                $errors[] = $path . ': fewer than ' . $s['minItems'] . ' items';
            }
            if (isset($s['maxItems']) && count($v) > $s['maxItems']) {
                $errors[] = $path . ': more than ' . $s['maxItems'] . ' items';
            }
            if (isset($s['items'])) {
                foreach ($v as $i => $item) {
                    self::check($item, $s['items'], $path . '/' . $i, $errors);
                }
            }
        }
    }

    private static function isType($v, $t)
    {
        switch ($t) {
            case 'object':
                return is_object($v);
            case 'array':
                return is_array($v);
            case 'string':
                return is_string($v);
            case 'integer':
                return is_int($v) || (is_float($v) && floor($v) === $v && abs($v) < 9.0e15);
            case 'number':
                return is_int($v) || is_float($v);
            case 'boolean':
                return is_bool($v);
            case 'null':
                return $v === null;
        }
        return false;
    }
}
