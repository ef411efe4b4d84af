"""Node definitions: parameters, inputs, outputs and process(); the NodeRunner shared by both hosts."""
