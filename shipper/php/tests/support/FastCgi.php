<?php
/**
 * A minimal FastCGI client for the harnesses that drive php-fpm directly
 * (the platform end-to-end check, the Excimer stress harness and the FPM
 * benchmark): one request per connection, role responder, no keep-alive.
 * Plain PHP 7.4, so it runs inside the Debian 11 root as well.
 */

namespace BitvilleApm\Tests\FastCgi;

/** The bytes of one request with these CGI parameters and an empty body. */
function request(array $params)
{
    $body = '';
    foreach ($params as $k => $v) {
        $body .= length((string) $k) . length((string) $v) . $k . $v;
    }
    // BEGIN_REQUEST (responder, no keep-alive), PARAMS, end of PARAMS, empty STDIN.
    return record(1, pack('nCx5', 1, 0)) . record(4, $body) . record(4, '') . record(5, '');
}

/**
 * Sends $request on the open stream $s and returns the whole STDOUT of the
 * answer (headers and body), reading until END_REQUEST or end of stream.
 */
function exchange($s, $request)
{
    fwrite($s, $request);
    $out = '';
    while (($h = fread($s, 8)) !== false && strlen($h) === 8) {
        $r = unpack('Cversion/Ctype/nid/nlength/Cpadding', $h);
        $want = $r['length'] + $r['padding'];
        $content = '';
        while (strlen($content) < $want && !feof($s)) {
            $content .= fread($s, $want - strlen($content));
        }
        if ($r['type'] === 6) {
            $out .= substr($content, 0, $r['length']);
        } elseif ($r['type'] === 3) {
            break;
        }
    }
    return $out;
}

/** The body of an answer from exchange(): what follows the headers. */
function body($answer)
{
    $at = strpos($answer, "\r\n\r\n");
    return $at === false ? null : substr($answer, $at + 4);
}

function record($type, $content)
{
    return pack('CCnnCx', 1, $type, 1, strlen($content), 0) . $content;
}

function length($s)
{
    return strlen($s) < 128 ? chr(strlen($s)) : pack('N', strlen($s) | 0x80000000);
}
